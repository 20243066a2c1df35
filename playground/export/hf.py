"""Our GPT as a transformers model: learned positions become GPT-2 (GPT2LMHeadModel), rotary
positions Starcoder2 (Starcoder2ForCausalLM, whose sliding window is our attention window).

Both are the same computation as ours: pre-norm blocks, the same GELU (exact, or GPT-2's tanh),
the same rotary pairing (channel i with i + hs/2, the same base). Their heads have no bias, so ours is folded into the
final layer norm's bias (`fold_head_bias`), which is exact while the vocabulary is at most the
width + 1 and a least-squares approximation beyond that.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from playground.engine.config import ModelConfig
from playground.engine.model.gpt import GPT
from playground.export.report import ExportError

# the ModelConfig fields this mapping knows: a new one away from its default is refused
KNOWN = frozenset({"vocab_size", "n_layer", "n_head", "n_embd", "block_size", "dropout", "attention_dropout",
                   "position", "head_bias", "activation", "tie_embeddings", "rope_base"})
# our activation -> (GPT-2's activation_function, Starcoder2's hidden_act)
ACTIVATIONS = {"gelu": ("gelu", "gelu"), "gelu_tanh": ("gelu_new", "gelu_pytorch_tanh")}
FOLD_EXACT = 1e-6  # a fold residual below this moves no log-probability by more than 2e-6
# a rotary model's window slides, so it takes any length; transformers warns past
# max_position_embeddings and vLLM takes it as the longest request, so it is long, not endless
ROTARY_LENGTH = 32768


@dataclass
class Converted:
    weights: dict[str, torch.Tensor]   # transformers' names and layouts
    config: dict                       # config.json
    architecture: str
    notes: list[str]
    fold_residual: float  # largest |W δ + c - b| of the head-bias fold (0 without a bias)


def check_mappable(model: GPT) -> float:
    """Refuse what transformers' GPT-2 and Starcoder2 cannot express; return the layer norms'
    epsilon."""
    config = model.config
    for f in dataclasses.fields(ModelConfig):
        value = getattr(config, f.name)
        if f.name not in KNOWN and value != f.default:
            raise ExportError(f"the model's setting {f.name} = {value!r} is new to the exporter, "
                              "which cannot map it onto a transformers architecture yet")
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    eps = {m.eps for m in norms}
    if len(eps) != 1 or any(m.weight is None or m.bias is None for m in norms):
        raise ExportError("the layer norms differ from one another or lack a scale or a bias")
    for block in model.h:
        rotary = block.attn.rotary
        if rotary is not None:
            hs = config.head_size
            expected = 1.0 / (config.rope_base ** (torch.arange(0, hs, 2).float() / hs))
            if not torch.allclose(rotary.inv_freq, expected):
                raise ExportError(f"the rotary frequencies differ from base {config.rope_base:g}")
    return eps.pop()


def fold_head_bias(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, float]:
    """δ (C,) and the residual: adding δ to the final norm's bias moves the logits by W δ, and
    a constant c moves them all alike, which softmax ignores; so δ and c solve W δ + c = b by
    least squares over [W | 1] (V, C + 1), exactly when V <= C + 1 and [W | 1] has full rank."""
    A = torch.cat([weight.double(), torch.ones(weight.size(0), 1, dtype=torch.float64)], dim=1)
    b = bias.double()[:, None]
    solution = torch.linalg.lstsq(A, b, driver="gelsd").solution  # least norm when V < C + 1
    residual = float((A @ solution - b).abs().max())
    return solution[:-1, 0].float(), residual


def convert(model: GPT) -> Converted:
    """The weights and config.json of the transformers model that computes what ours does.
    Plain tensors and a dict: writing them needs no transformers (only verifying does)."""
    eps = check_mappable(model)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    notes, residual = [], 0.0
    if model.config.head_bias:
        delta, residual = fold_head_bias(sd["lm_head.weight"], sd.pop("lm_head.bias"))
        sd["ln_f.bias"] = sd["ln_f.bias"] + delta
        V, C = model.config.vocab_size, model.config.n_embd
        notes.append(f"head bias folded into the final layer norm's bias ({V} tokens, width {C}: "
                     + ("exact)" if residual <= FOLD_EXACT else f"least squares, residual {residual:.2g})"))
    if model.config.position == "learned":
        (weights, config), architecture = _gpt2(model.config, eps, sd), "GPT2LMHeadModel"
        notes.append("learned positions -> GPT-2: attention and MLP weights transposed for Conv1D; prompt and "
                     f"output together take at most {model.config.block_size + 1} tokens (max_new_tokens up to "
                     f"{model.config.block_size + 1} minus the prompt): past that transformers raises IndexError, "
                     "as for any GPT-2")
    else:
        (weights, config), architecture = _starcoder2(model.config, eps, sd), "Starcoder2ForCausalLM"
        notes.append(f"rotary positions -> Starcoder2 with sliding window {model.config.block_size}: "
                     "queries, keys and values split out of the fused projection")
    weights = {k: v.float().contiguous() for k, v in weights.items()}
    config.update(architectures=[architecture], dtype="float32", torch_dtype="float32",
                  bos_token_id=None, eos_token_id=None, pad_token_id=None,
                  tie_word_embeddings=model.config.tie_embeddings,
                  use_cache=True, initializer_range=0.02)
    return Converted(weights, config, architecture, notes, residual)


def _attention_dropout(config: ModelConfig) -> float:
    return config.dropout if config.attention_dropout else 0.0


def _gpt2(config: ModelConfig, eps: float, sd: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    hf_config = dict(
        model_type="gpt2", vocab_size=config.vocab_size, n_positions=config.block_size,
        n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head, n_inner=4 * config.n_embd,
        activation_function=ACTIVATIONS[config.activation][0],  # "gelu_new" is GPT-2's tanh GELU
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=_attention_dropout(config),
        layer_norm_epsilon=eps, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False)
    weights = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"],
               "transformer.ln_f.weight": sd["ln_f.weight"], "transformer.ln_f.bias": sd["ln_f.bias"],
               "lm_head.weight": sd["lm_head.weight"]}
    for i in range(config.n_layer):
        for name in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            weight, bias = sd[f"h.{i}.{name}.weight"], sd[f"h.{i}.{name}.bias"]
            # GPT-2's Conv1D holds (in, out), nn.Linear (out, in)
            weights[f"transformer.h.{i}.{name}.weight"] = weight if name.startswith("ln") else weight.t()
            weights[f"transformer.h.{i}.{name}.bias"] = bias
    return weights, hf_config


def _starcoder2(config: ModelConfig, eps: float, sd: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    C = config.n_embd
    hf_config = dict(
        model_type="starcoder2", vocab_size=config.vocab_size, hidden_size=C, intermediate_size=4 * C,
        num_hidden_layers=config.n_layer, num_attention_heads=config.n_head,
        num_key_value_heads=config.n_head, hidden_act=ACTIVATIONS[config.activation][1],
        max_position_embeddings=max(config.block_size, ROTARY_LENGTH), norm_epsilon=eps, use_bias=True,
        # transformers 5 reads rope_parameters, 4.x rope_theta: the same base either way
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_base}, rope_theta=config.rope_base,
        # ours: a query sees keys at most block_size - 1 positions back; so does theirs
        sliding_window=config.block_size, attention_dropout=_attention_dropout(config),
        residual_dropout=config.dropout, embedding_dropout=config.dropout)
    weights = {"model.embed_tokens.weight": sd["wte.weight"], "model.norm.weight": sd["ln_f.weight"],
               "model.norm.bias": sd["ln_f.bias"], "lm_head.weight": sd["lm_head.weight"]}
    for i in range(config.n_layer):
        ours, theirs = f"h.{i}.", f"model.layers.{i}."
        for a, b in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm"),
                     ("attn.c_proj", "self_attn.o_proj"), ("mlp.c_fc", "mlp.c_fc"),
                     ("mlp.c_proj", "mlp.c_proj")):
            for part in ("weight", "bias"):
                weights[f"{theirs}{b}.{part}"] = sd[f"{ours}{a}.{part}"]
        for part in ("weight", "bias"):
            q, k, v = sd[f"{ours}attn.c_attn.{part}"].split(C, dim=0)  # rows: [q | k | v]
            for name, t in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                weights[f"{theirs}self_attn.{name}.{part}"] = t
    return weights, hf_config


def write(converted: Converted, config: ModelConfig, folder: Path) -> None:
    """config.json, generation_config.json and model.safetensors (no pickle, no transformers)."""
    from safetensors.torch import save_file
    # plain sampling from the whole distribution, as the app samples by default (no hidden top-k).
    # No max_length: transformers warns on every call that gives max_new_tokens beside it, and
    # max_new_tokens overrides it anyway; the limit of learned positions is n_positions
    generation = {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0}
    for name, data in (("config.json", converted.config), ("generation_config.json", generation)):
        (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(converted.weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
