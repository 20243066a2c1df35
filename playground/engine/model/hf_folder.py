"""Opening a transformers folder as our model: GPT-2 (GPT2LMHeadModel: what our export writes for
learned positions, and what `hf download distilgpt2` gives) and Starcoder2 (what our export
writes for rotary positions). The weights map exactly onto our GPT, with what those models need
stated as our own settings (GPT-2's tanh GELU, tied embeddings, no head bias, the rotary base);
the tokenizer comes as it is (tokenizer.json, a byte-level BPE). Read with json and safetensors
alone (never pickle); transformers, when installed, verifies what was read (verify()).
Everything that opens a model file opens such a folder (checkpoint.load hands folders here).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch

from playground.engine.config import ModelConfig
from playground.engine.errors import CheckpointError, ConfigError

SUPPORTED = {"GPT2LMHeadModel": "gpt2", "Starcoder2ForCausalLM": "starcoder2"}
TOLERANCE = 1e-4     # max |Δ log-probability| against transformers on load
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
STARCODER2_ACTIVATIONS = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}
NORM_EPS = 1e-5      # our layer norms' epsilon (torch's default)


def is_folder(path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def read_config(folder: Path) -> tuple[str, dict]:
    """(our name for the architecture, config.json); CheckpointError naming what is supported."""
    try:
        hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder.name}/config.json cannot be read: {exc}") from None
    if not isinstance(hf, dict):
        raise CheckpointError(f"{folder.name}/config.json is not a JSON object")
    names = hf.get("architectures") or []
    arch = next((SUPPORTED[n] for n in names if n in SUPPORTED), None)
    if arch is None and hf.get("model_type") in SUPPORTED.values():
        arch = hf["model_type"]
    if arch is None:
        raise CheckpointError(f"{folder.name} holds a {', '.join(names) or hf.get('model_type', 'an unknown')} "
                              f"model; the playground opens {' and '.join(SUPPORTED)} folders")
    return arch, hf


def _need(condition: bool, folder: Path, what: str) -> None:
    if not condition:
        raise CheckpointError(f"{folder.name} uses {what}, which the playground's GPT does not have")


def model_config(arch: str, hf: dict, folder: Path) -> ModelConfig:
    """Our settings for this transformers config; CheckpointError for what ours cannot express."""
    if arch == "gpt2":
        C, act = hf.get("n_embd", 768), hf.get("activation_function", "gelu_new")
        _need(act in GPT2_ACTIVATIONS, folder, f"the activation {act!r}")
        _need(hf.get("n_inner") in (None, 4 * C), folder, f"an MLP of {hf.get('n_inner')} (not 4 x {C})")
        _need(math.isclose(hf.get("layer_norm_epsilon", 1e-5), NORM_EPS), folder, "another layer-norm epsilon")
        _need(hf.get("scale_attn_weights", True) and not hf.get("scale_attn_by_inverse_layer_idx", False),
              folder, "another scaling of attention")
        cfg = ModelConfig(vocab_size=hf.get("vocab_size", 50257), n_layer=hf.get("n_layer", 12),
                          n_head=hf.get("n_head", 12), n_embd=C, block_size=hf.get("n_positions", 1024),
                          position="learned", head_bias=False, activation=GPT2_ACTIVATIONS[act],
                          tie_embeddings=bool(hf.get("tie_word_embeddings", True)))
    else:
        C, act = hf.get("hidden_size"), hf.get("hidden_act", "gelu_pytorch_tanh")
        heads = hf.get("num_attention_heads")
        _need(act in STARCODER2_ACTIVATIONS, folder, f"the activation {act!r}")
        _need(hf.get("num_key_value_heads", heads) == heads, folder,
              f"grouped-query attention ({hf.get('num_key_value_heads')} key/value heads for {heads})")
        _need(hf.get("intermediate_size") == 4 * C, folder, f"an MLP of {hf.get('intermediate_size')} (not 4 x {C})")
        _need(hf.get("use_bias", True), folder, "layers without biases")
        _need(math.isclose(hf.get("norm_epsilon", 1e-5), NORM_EPS), folder, "another layer-norm epsilon")
        rope = hf.get("rope_parameters") or {}
        _need(rope.get("rope_type", "default") == "default", folder, f"rotary scaling {rope.get('rope_type')!r}")
        theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
        window = hf.get("sliding_window") or hf.get("max_position_embeddings", 4096)
        cfg = ModelConfig(vocab_size=hf.get("vocab_size"), n_layer=hf.get("num_hidden_layers"), n_head=heads,
                          n_embd=C, block_size=window, position="rope", head_bias=False,
                          activation=STARCODER2_ACTIVATIONS[act], rope_base=float(theta),
                          tie_embeddings=bool(hf.get("tie_word_embeddings", True)))
    try:
        return cfg.check()
    except ConfigError as exc:
        raise CheckpointError(f"{folder.name}'s settings do not fit the playground's GPT: {exc}") from None


def check_memory(cfg: ModelConfig, folder: Path, factor: float = 2.0) -> None:
    """Refuse, before anything is read, a model whose weights (twice: the file's tensors and the
    model's) would not fit in the memory this machine has free."""
    from playground.engine.model.param_count import count_params
    from playground.engine.wording import size
    need = count_params(cfg) * 4 * factor
    free = _available_bytes()
    if free is not None and need > free:
        raise CheckpointError(f"{folder.name} needs about {size(need)} of memory to open "
                              f"({count_params(cfg):,} parameters in float32); this machine has {size(free)} free")


def _available_bytes() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def weight_files(folder: Path) -> list[Path]:
    """model.safetensors (or its shards); CheckpointError when there are none, naming pickled
    weights, which are never loaded."""
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        if pickled:
            raise CheckpointError(f"{folder.name} holds its weights as pickle ({', '.join(pickled)}), which the "
                                  "playground never loads: save them as safetensors "
                                  "(model.save_pretrained(folder, safe_serialization=True))")
        raise CheckpointError(f"{folder.name} has no model.safetensors")
    from safetensors import safe_open
    for f in files:  # (their headers: a damaged file is named before anything waits on it)
        try:
            with safe_open(str(f), "pt"):
                pass
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{folder.name}/{f.name} is damaged: {exc}") from None
    return files


def read_weights(folder: Path, files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of the weight files (weight_files: model.safetensors or its shards)."""
    from safetensors.torch import load_file
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            weights.update(load_file(str(f)))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{folder.name}/{f.name} is damaged: {exc}") from None
    return weights


def state_dict(arch: str, cfg: ModelConfig, hf: dict[str, torch.Tensor], folder: Path) -> dict[str, torch.Tensor]:
    """transformers' names and layouts -> ours (the inverse of the export's mapping)."""
    out: dict[str, torch.Tensor] = {}
    C = cfg.n_embd

    def take(*names: str) -> torch.Tensor:
        for name in names:
            if name in hf:
                return hf[name].float()
        raise CheckpointError(f"{folder.name} lacks the weight {names[0]}")

    if arch == "gpt2":
        prefix = "transformer." if any(k.startswith("transformer.") for k in hf) else ""
        out["wte.weight"] = take(f"{prefix}wte.weight")
        out["wpe.weight"] = take(f"{prefix}wpe.weight")
        out["ln_f.weight"], out["ln_f.bias"] = take(f"{prefix}ln_f.weight"), take(f"{prefix}ln_f.bias")
        for i in range(cfg.n_layer):
            for name in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                weight = take(f"{prefix}h.{i}.{name}.weight")
                # GPT-2's Conv1D holds (in, out), our nn.Linear (out, in)
                out[f"h.{i}.{name}.weight"] = weight if name.startswith("ln") else weight.t().contiguous()
                out[f"h.{i}.{name}.bias"] = take(f"{prefix}h.{i}.{name}.bias")
    else:
        out["wte.weight"] = take("model.embed_tokens.weight")
        out["ln_f.weight"], out["ln_f.bias"] = take("model.norm.weight"), take("model.norm.bias")
        for i in range(cfg.n_layer):
            ours, theirs = f"h.{i}.", f"model.layers.{i}."
            for a, b in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm"),
                         ("attn.c_proj", "self_attn.o_proj"), ("mlp.c_fc", "mlp.c_fc"), ("mlp.c_proj", "mlp.c_proj")):
                for part in ("weight", "bias"):
                    out[f"{ours}{a}.{part}"] = take(f"{theirs}{b}.{part}")
            for part in ("weight", "bias"):  # the fused projection: rows [q | k | v]
                out[f"{ours}attn.c_attn.{part}"] = torch.cat(
                    [take(f"{theirs}self_attn.{n}_proj.{part}") for n in "qkv"], dim=0)
    out["lm_head.weight"] = out["wte.weight"] if cfg.tie_embeddings else take("lm_head.weight")
    if out["wte.weight"].shape != (cfg.vocab_size, C):
        raise CheckpointError(f"{folder.name}'s token embedding is {tuple(out['wte.weight'].shape)}, "
                              f"not ({cfg.vocab_size}, {C}) as its config says")
    return out


def read_tokenizer(folder: Path):
    """The folder's byte-level BPE (tokenizer.json, or vocab.json and merges.txt)."""
    from playground.engine.data.bpe import BPETokenizer
    path = folder / "tokenizer.json"
    try:
        if path.is_file():
            return BPETokenizer.from_dict({"type": "bpe", "json": path.read_text(encoding="utf-8")})
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        if vocab.is_file() and merges.is_file():
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers
            tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            return BPETokenizer(tok)
    except ConfigError as exc:
        raise CheckpointError(f"{folder.name}'s tokenizer cannot be used: {exc}") from None
    raise CheckpointError(f"{folder.name} has no tokenizer (tokenizer.json, or vocab.json and merges.txt)")


def opened(folder: Path):
    """(architecture, our ModelConfig, tokenizer, weight files) of a folder whose weights load
    would read: everything load checks before it reads them (settings, memory, weight files,
    tokenizer). `serve` asks this before it listens."""
    arch, hf = read_config(folder)
    cfg = model_config(arch, hf, folder)
    check_memory(cfg, folder)
    files = weight_files(folder)
    tokenizer = read_tokenizer(folder)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(f"{folder.name}'s tokenizer has {tokenizer.vocab_size:,} tokens, more than the "
                              f"model's {cfg.vocab_size:,}")
    if tokenizer.vocab_size < cfg.vocab_size:  # a padded embedding: the extra rows are never written
        from playground.engine.data.bpe import BPETokenizer
        tokenizer = BPETokenizer.padded(tokenizer, cfg.vocab_size)
    return arch, cfg, tokenizer, files


def load(folder, verify: bool = True):
    """(model, tokenizer, state) of the folder: its weights, its tokenizer and where it came from
    (checkpoint.load makes them a Checkpoint); with verify and transformers installed, held to
    transformers' own forward (CheckpointError beyond TOLERANCE)."""
    from playground.engine.model.gpt import GPT
    folder = Path(folder)
    arch, cfg, tokenizer, files = opened(folder)
    model = GPT.unset(cfg)  # every weight is set next, or the folder is refused
    weights = state_dict(arch, cfg, read_weights(folder, files), folder)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:  # every weight is taken, and nothing is left over
        raise CheckpointError(f"{folder.name} does not map onto the model exactly (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    model.eval()
    state = {"corpus": folder.name, "source": f"transformers folder ({arch})", "start_char": "\n", "step": 0}
    if verify:
        error = verify_against_transformers(folder, model)
        if error is not None:
            state["verified"] = error
    return model, tokenizer, state


def verify_against_transformers(folder: Path, model, windows: int = 3, length: int = 32) -> Optional[float]:
    """The largest |Δ log-probability| between our model and transformers' on a few windows of
    random ids; None when transformers is not installed. CheckpointError beyond TOLERANCE."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        return None
    from transformers.utils import logging as hf_logging
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar is not ours to print
    try:
        theirs = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for _ in range(windows):
            ids = torch.randint(cfg.vocab_size, (1, min(length, cfg.block_size)), generator=gen)
            mine = model(ids)[0].log_softmax(-1)
            other = theirs(ids).logits.float().log_softmax(-1)
            worst = max(worst, float((mine - other).abs().max()))
    if worst > TOLERANCE:
        raise CheckpointError(f"{folder.name} read differently from transformers' own model (max |Δ log-prob| "
                              f"{worst:.2g} > {TOLERANCE}): the mapping does not hold for this folder")
    return worst
