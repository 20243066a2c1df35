"""What the window's Fine-tune asks before it starts, as plain values: which base, which text,
how it adapts, where the base's original text comes from; and the figures the form shows as it
is filled in (the trainable share, by a formula: no torch, no model copy on the GUI thread)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from playground.engine.config import LORA_TARGETS, AdaptConfig, TrainConfig
from playground.ui.controllers.model_in_hand import OpenedModel, TrainedModel

# each target's LoRA pair is A (rank x in) and B (out x rank): rank * (in + out) numbers, in
# multiples of the width C (c_attn: C -> 3C, attn.c_proj: C -> C, c_fc: C -> 4C, mlp.c_proj: 4C -> C)
_IN_PLUS_OUT = {"attn.c_attn": 4, "attn.c_proj": 2, "mlp.c_fc": 5, "mlp.c_proj": 5}
assert set(_IN_PLUS_OUT) == set(LORA_TARGETS)


@dataclass(frozen=True)
class FinetuneRequest:
    """What the form asks for. original: None (what the model keeps of its text, if anything),
    ("builtin", name) or ("file", path), read on the worker; again: adapt the base the last
    fine-tune started from (to compare methods), not the model in hand."""

    adapt: AdaptConfig
    train: TrainConfig
    drop_unknown: bool = False
    original: Optional[tuple[str, str]] = None
    again: bool = False


def adapter_count(model_cfg, adapt: AdaptConfig) -> int:
    """The numbers LoRA adds (and trains) on a model of these settings: what peft's adapters
    hold, rank * (inputs + outputs) for each chosen projection of each block (a test compares
    it with the real adapters)."""
    per_block = sum(_IN_PLUS_OUT[t] for t in adapt.target_list() if t in _IN_PLUS_OUT)
    return model_cfg.n_layer * adapt.rank * per_block * model_cfg.n_embd


def trainable_share(model_cfg, total: int, adapt: AdaptConfig) -> tuple[int, int]:
    """(parameters that train, all of them) for a fine-tune of a model of `total` parameters,
    as engine/model/lora.py's trainable() counts them on the adapted model."""
    if adapt.method != "lora":
        return total, total
    extra = adapter_count(model_cfg, adapt)
    return extra, total + extra


def share_text(n_train: int, n_total: int) -> str:
    """'16,384 of 429,889 parameters train (3.81%)'."""
    return f"{n_train:,} of {n_total:,} parameters train ({n_train / max(n_total, 1):.2%})"


def unknown_characters(tokenizer, text: str) -> tuple[str, ...]:
    """The text's characters a character model never saw (none for subword tokenizers, which
    encode any text), in the order the tokenizer meets them, by its own rule."""
    if tokenizer is None or tokenizer.kind != "char":
        return ()
    return tokenizer.encode_lenient("".join(sorted(set(text)))).unknown


def base_settings(base):
    """The ModelConfig of a base: the model in hand (TrainedModel, OpenedModel) or a checkpoint."""
    return base.config if isinstance(base, (TrainedModel, OpenedModel)) else base.model_config


def kept_original(base) -> str:
    """The name of the original text a base knows (what engine/training/adapt.py's
    original_corpus finds: the record its file keeps, else the built-in corpus it was trained
    on), or '' when it knows none. base: the model in hand, or a checkpoint."""
    from playground.engine.data.corpus import BUILTINS
    state = ({"original": base.trainer.original_record} if isinstance(base, TrainedModel) else
             base.ckpt.state if isinstance(base, OpenedModel) else getattr(base, "state", None) or {})
    record = state.get("original")
    if isinstance(record, dict) and isinstance(record.get("train"), str):
        return str(record.get("name") or "its original text")
    corpus = state.get("corpus")
    return corpus if isinstance(corpus, str) and corpus in BUILTINS else ""


def read_original(original: Optional[tuple[str, str]]) -> tuple[Optional[str], Optional[str]]:
    """(name, text) of the original text the user picked, read now (on a worker); (None, None)
    for what the model keeps. A downloadable corpus is never fetched here: it is named as missing."""
    if original is None:
        return None, None
    kind, value = original
    from pathlib import Path

    from playground.engine.data.corpus import read_text_file, resolve_source
    if kind == "file":
        return Path(value).name, read_text_file(value)
    return resolve_source(builtin=value, allow_download=False)


def describe_adaptation(adapt: AdaptConfig, train: TrainConfig, corpus: str) -> str:
    """A fine-tune in a few words, for the plot's legend: 'fine-tune on fable: LoRA rank 8,
    alpha 16, lr 0.001, 200 steps'."""
    how = (f"LoRA rank {adapt.rank}, alpha {adapt.alpha:g}" if adapt.method == "lora" else "full")
    if adapt.method == "lora" and adapt.target_list() != list(LORA_TARGETS):
        how += f" ({', '.join(adapt.target_list())})"
    replay = f", replay {adapt.replay:g}" if adapt.replay else ""
    return f"fine-tune on {corpus}: {how}, lr {train.learning_rate:g}, {train.max_steps:,} steps{replay}"


def method_tag(adapt: AdaptConfig) -> str:
    """The method in a word or two, for the legend's list of earlier runs: 'full', 'LoRA r8'."""
    return f"LoRA r{adapt.rank}" if adapt.method == "lora" else "full"
