"""Adapting a model you already have to new text (the chapter's "take a pretrained model and adapt
it"): fully, every weight training, or with LoRA, low-rank adapters beside the projections made
by peft (the base's weights stay frozen). The base's tokenizer is kept; its original text, kept
with the model file (or named by the user), is scored at every evaluation beside the new text's
held-out part, so what the new skill costs shows as it happens, and a share of each batch can
replay it. A LoRA run ends as an ordinary model (the adapters merged by peft) and, on request,
as the adapter alone, in PEFT's layout for our transformers export of the same base.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

import numpy as np

from playground.engine.config import AdaptConfig, TrainConfig
from playground.engine.data.corpus import Corpus, builtin_text
from playground.engine.errors import ConfigError
from playground.engine.model.lora import adapter_layers, add_adapters
from playground.engine.training.prepare import prepare_corpus


# -- the texts ------------------------------------------------------------------------------
def known_text(tokenizer, text: str, drop_unknown: bool) -> str:
    """The new text for a character model: characters it never saw are refused, naming them
    (never dropped silently), or left out when asked."""
    if tokenizer.kind != "char":
        return text
    unknown = sorted(set(text) - set(tokenizer.chars))
    if not unknown:
        return text
    if not drop_unknown:
        shown = ", ".join(repr(c) for c in unknown[:12]) + (f" and {len(unknown) - 12} more" if len(unknown) > 12 else "")
        raise ConfigError(f"the new text has {len(unknown)} character{'s' * (len(unknown) > 1)} the model never saw "
                          f"({shown}); a model keeps "
                          "its vocabulary, so they can only be left out (--drop-unknown, or Drop them in the window)")
    gone = set(unknown)
    return "".join(c for c in text if c not in gone)


def original_corpus(ckpt, train: TrainConfig, name: Optional[str] = None, text: Optional[str] = None) -> Optional[Corpus]:
    """The base's original text, encoded by its tokenizer: the text given, else what the model
    file keeps of it, else a built-in corpus of that name; None when none is known."""
    tokenizer, block = ckpt.tokenizer, ckpt.model_config.block_size
    if text is not None:
        return prepare_corpus(name or "original text", known_text(tokenizer, text, True), block, train, tokenizer)
    record = ckpt.state.get("original")
    if isinstance(record, dict) and isinstance(record.get("train"), str) and isinstance(record.get("validation"), str):
        train_ids = tokenizer.encode_array(known_text(tokenizer, record["train"], True))
        val_ids = tokenizer.encode_array(known_text(tokenizer, record["validation"], True))
        if len(val_ids) < block + 1:
            val_ids = val_ids[:0]
        ids = np.concatenate([train_ids, val_ids]).astype(train_ids.dtype if len(train_ids) else np.int32)
        if len(train_ids) >= block + 1:
            return Corpus(str(record.get("name", "original")), record["train"] + record["validation"],
                          tokenizer, ids, len(train_ids), train_chars=len(record["train"]))
    corpus = ckpt.state.get("corpus")
    if isinstance(corpus, str):
        try:
            return prepare_corpus(corpus, known_text(tokenizer, builtin_text(corpus), True), block, train, tokenizer)
        except Exception:  # not a built-in corpus: nothing is known of it
            return None
    return None


# -- a run --------------------------------------------------------------------------------
# a fine-tune's own starting settings (the command line's flags and the window's form change
# them): short, gentle, AdamW on every kind of base
DEFAULTS = {"max_steps": 200, "learning_rate": 1e-3, "min_lr": 1e-4, "eval_interval": 50, "warmup_steps": 0,
            "optimizer": "adamw", "keep": "best", "patience": 0, "threads": 0, "ema": 0.0}


def finetune_settings(base, **edits) -> TrainConfig:
    """The training settings of a fine-tune of the checkpoint `base`: its own, with DEFAULTS,
    then the user's edits by the rule every caller shares (TrainConfig.edited)."""
    return (base.train_config or TrainConfig()).replace(**DEFAULTS).edited(**edits)


def prepare_adaptation(base, name: str, text: str, train: TrainConfig, adapt: AdaptConfig,
                       original_name: Optional[str] = None, original_text: Optional[str] = None,
                       drop_unknown: bool = False, tasks: tuple = (), in_place: bool = False, **options):
    """A Trainer that adapts the checkpoint `base` to the text: its tokenizer and settings kept,
    a copy of its weights (with adapters for LoRA), its original text measured beside the new.
    in_place trains base.model itself instead of a copy (the command line, which needs the base
    no more: one copy of GPT-2 small's weights is 500 MB)."""
    from playground.engine.training.trainer import Trainer, original_record
    adapt.check()
    train = train.replace(tokenizer=base.tokenizer.kind, keep=train.keep).check()
    text = known_text(base.tokenizer, text, drop_unknown)
    corpus = prepare_corpus(name, text, base.model_config.block_size, train, base.tokenizer, tasks)
    original = original_corpus(base, train, original_name, original_text)
    if adapt.replay and original is None:
        raise ConfigError("replay needs the model's original text: this model file does not keep it; "
                          "name it (--base-text FILE or --base-builtin NAME)")
    model = (base.model if in_place else copy.deepcopy(base.model)).train()
    if adapt.method == "lora":
        model = add_adapters(model, adapt)
    trainer = Trainer(base.model_config, train, corpus, model=model, original=original, replay=adapt.replay,
                      **options)
    trainer.evaluate_first = True
    trainer.original_record = (base.state.get("original") if isinstance(base.state.get("original"), dict)
                               else original_record(original) if original is not None else None)
    return trainer


# -- the adapter alone, for transformers ----------------------------------------------------
def save_adapter(model, adapt: AdaptConfig, folder, base_name: str = "") -> Path:
    """The adapters alone in PEFT's layout (adapter_config.json, adapter_model.safetensors) for
    our transformers export of the same base: GPT-2's names and Conv1D layout for learned
    positions, Starcoder2's (queries, keys and values split out of the fused projection) for
    rotary ones; PeftModel.from_pretrained(exported base, folder) then computes what our merged
    model computes. Written to a temporary folder, then moved into place."""
    import shutil
    import tempfile

    from peft import LoraConfig
    from safetensors.torch import save_file
    cfg = model.config
    gpt2 = cfg.position == "learned"
    names = {"attn.c_attn": ["attn.c_attn"] if gpt2 else ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
             "attn.c_proj": ["attn.c_proj"] if gpt2 else ["self_attn.o_proj"],
             "mlp.c_fc": ["mlp.c_fc"], "mlp.c_proj": ["mlp.c_proj"]}
    prefix = "base_model.model.transformer.h" if gpt2 else "base_model.model.model.layers"
    tensors, targets = {}, set()
    for name, layer in adapter_layers(model):
        block, _, kind = name.partition(".")[2].partition(".")  # h.{i}.{kind}
        A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        theirs = names[kind]
        parts = B.chunk(len(theirs), dim=0)  # the fused projection's rows: [q | k | v]
        for their, part in zip(theirs, parts):
            tensors[f"{prefix}.{block}.{their}.lora_A.weight"] = A.clone().contiguous()
            tensors[f"{prefix}.{block}.{their}.lora_B.weight"] = part.clone().contiguous()
            targets.add(their.rpartition(".")[2])
    config = LoraConfig(r=adapt.rank, lora_alpha=adapt.alpha, target_modules=sorted(targets), lora_dropout=0.0,
                        bias="none", fan_in_fan_out=gpt2, task_type="CAUSAL_LM", base_model_name_or_path=base_name)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} exists and is not empty: choose a new folder for the adapter")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        config.save_pretrained(str(staging))
        save_file(tensors, str(staging / "adapter_model.safetensors"), metadata={"format": "pt"})
        (staging / "README.md").write_text(
            f"A LoRA adapter (rank {adapt.rank}, alpha {adapt.alpha:g}) made by GPT Playground for "
            f"{'GPT-2' if gpt2 else 'Starcoder2'} models exported from its base{f' ({base_name})' if base_name else ''}.\n")
        if folder.exists():
            folder.rmdir()
        staging.replace(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def check_adapter(folder, base_cfg) -> dict:
    """An adapter folder's config, refused with the reason when it was made for another base
    (its shapes or names do not fit)."""
    from safetensors import safe_open
    folder = Path(folder)
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder} is not an adapter folder: {exc}") from None
    C, L = base_cfg.n_embd, base_cfg.n_layer
    for key, shape in shapes.items():
        layer = [int(p) for p in key.split(".") if p.isdigit()]
        if layer and layer[0] >= L:
            raise ConfigError(f"the adapter was made for a deeper model: {key} (this base has {L} layers)")
        if key.endswith("lora_A.weight") and shape[1] not in (C, 4 * C):
            raise ConfigError(f"the adapter was made for another width: {key} is {shape} (this base is {C} wide)")
    return config
