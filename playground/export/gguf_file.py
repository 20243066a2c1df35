"""Our GPT as one GGUF file for llama.cpp and Ollama: learned positions as llama.cpp's "gpt2",
rotary ones as its "starcoder2", with the tensor names and metadata keys of gguf's constants, as
llama.cpp's own converter writes them for GPT-2 and Starcoder2 (convert_hf_to_gguf.py).

What llama.cpp computes there and what follows (its src/models/gpt2.cpp, starcoder2.cpp):
- pre-norm blocks, fused (gpt2) or split (starcoder2) q/k/v with biases, NEOX rotary (channel i
  with i + hs/2, as ours) and no head bias: ours is folded into the final norm's bias (hf.py).
- GPT-2's tanh GELU, which ggml's CPU code looks up in a half-precision table: a model trained
  with --activation gelu_tanh is the same function; one with the exact GELU is close, not equal.
- the whole context attends (no sliding window), and llama.cpp rounds every context up to a
  multiple of 256 tokens (CONTEXT_STEP) whatever it is asked for. The file's context is our block
  rounded up so (`context_of`): the first `block` tokens are our model exactly; a learned position
  table is padded to that length with copies of its last row, because llama.cpp aborts the whole
  process past the end of the table; past `block` tokens the text is llama.cpp's, not our model's.
- the tokenizer is GPT-2's byte-level BPE ("gpt2" with the "gpt-2" pre-tokenizer). A character
  vocabulary is written as one: each character is the byte-level spelling of its UTF-8 bytes,
  with merges that join the bytes of each character and nothing else, so llama.cpp splits text
  into our characters and drops unknown ones as we do.
- without an end-of-text token llama.cpp takes token 11 as one and stops there. A model without
  one gets an extra token whose head row can never win (`never_row`), named <|endoftext|>.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from playground.engine.config import ModelConfig
from playground.engine.data.bpe import BYTE_OF, END_OF_TEXT
from playground.engine.data.tokenizer import Tokenizer
from playground.engine.model.gpt import GPT
from playground.export import hf
from playground.export.report import ExportError

ARCHITECTURES = {"learned": "gpt2", "rope": "starcoder2"}
SYMBOL_OF = {b: c for c, b in BYTE_OF.items()}   # byte -> its byte-level stand-in
NORMAL, CONTROL, UNUSED = 1, 3, 5                  # gguf.TokenType
# llama.cpp refuses a BPE vocabulary without merges (characters of one byte, or a BPE of bytes
# alone): this one joins a pair no text can form (two NUL stand-ins, then a third), so it never applies
NO_MERGE = f"{SYMBOL_OF[0] * 2} {SYMBOL_OF[0]}"
CONTEXT_STEP = 256   # llama.cpp pads n_ctx to a multiple of this (llama_context's constructor)
MARGIN = 60.0   # the appended end-of-text logit sits this far below every other (e^-60: never)


@dataclass
class Plan:
    """Everything the file holds, as plain arrays and lists (written by `write`)."""
    arch: str
    config: ModelConfig
    eps: float
    tensors: dict[str, np.ndarray]      # llama.cpp's names; (out, in) as nn.Linear holds them
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    end_of_text: Optional[int]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fold_residual: float = 0.0
    context: int = 0                    # the file's context length (context_of)

    @property
    def exact_activation(self) -> bool:
        return self.config.activation == "gelu_tanh"


def convert(model: GPT, tokenizer: Tokenizer) -> Plan:
    """The file's contents for `model`, or ExportError for what llama.cpp cannot run."""
    config = model.config
    eps = hf.check_mappable(model)
    sd = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    notes, warnings, residual = [], [], 0.0
    if config.head_bias:
        delta, residual = hf.fold_head_bias(sd["lm_head.weight"], sd.pop("lm_head.bias"))
        sd["ln_f.bias"] = sd["ln_f.bias"] + delta
        notes.append("head bias folded into the final layer norm's bias ("
                     + ("exact)" if residual <= hf.FOLD_EXACT else f"least squares, residual {residual:.2g})"))
    tokens, types, merges, eot = vocabulary(tokenizer, config.vocab_size)
    merges = merges or [NO_MERGE]
    if eot is None:
        row = never_row(sd["lm_head.weight"], sd["ln_f.weight"], sd["ln_f.bias"])
        if row is None:
            warnings.append(f"the model has no end-of-text token and none could be added safely: "
                            f"llama.cpp and Ollama take token 11 ({tokenizer.label(11)!r}) as the end of "
                            "the text and stop there; train a BPE model (it has one) to avoid it"
                            if config.vocab_size > 11 else "the model has no end-of-text token")
        else:
            eot = len(tokens)
            tokens.append(END_OF_TEXT)
            types.append(CONTROL)
            sd["wte.weight"] = torch.cat([sd["wte.weight"], torch.zeros(1, config.n_embd)])
            sd["lm_head.weight"] = torch.cat([sd["lm_head.weight"], row[None]])
            notes.append(f"end-of-text token {eot} added (the model has none; its logit stays "
                         f"{MARGIN:g} below every other, so it is never chosen)")
    context = context_of(config)
    if config.position == "learned":
        tensors = _gpt2(config, sd, context)
        notes.append(f"learned positions -> llama.cpp's gpt2, context {context} tokens"
                     + (f" (the position table of {config.block_size} padded with its last row)"
                        if context > config.block_size else "") + "; a larger -c aborts llama.cpp past the table")
    else:
        tensors = _starcoder2(config, sd)
        notes.append(f"rotary positions -> llama.cpp's starcoder2, context {context} tokens")
    if context > config.block_size:
        warnings.append(f"exact for the first {config.block_size} tokens (prompt and output together), the "
                        f"model's block; llama.cpp counts its context in steps of {CONTEXT_STEP}, so it goes on "
                        f"to {context}, where our model would slide its window and llama.cpp cannot: the text past "
                        f"{config.block_size} tokens is not the model's. Keep prompt + output within "
                        f"{config.block_size} tokens (llama-completion -n, Ollama's num_predict), or train with --block "
                        f"{context}")
    if config.activation != "gelu_tanh":
        warnings.append("llama.cpp computes GPT-2's tanh GELU and this model was trained with the exact "
                        "GELU: its log-probabilities are close, not equal (see the figure above); train "
                        "with --activation gelu_tanh for a model llama.cpp computes as we do")
    return Plan(ARCHITECTURES[config.position], config, eps, tensors, tokens, types, merges, eot,
                notes, warnings, residual, context)


def context_of(config: ModelConfig) -> int:
    """The file's context: the block, rounded up to llama.cpp's step."""
    return -(-config.block_size // CONTEXT_STEP) * CONTEXT_STEP


def vocabulary(tokenizer: Tokenizer, size: int) -> tuple[list[str], list[int], list[str], Optional[int]]:
    """(tokens, token types, merges, end-of-text id) as GPT-2's byte-level BPE spells them."""
    if tokenizer.kind == "bpe":
        model = json.loads(tokenizer.tok.to_str())["model"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        tokens, types = [], []
        for i in range(size):
            piece = tokenizer.tok.id_to_token(i)   # None: a padding id beyond the trained ones
            special = i in tokenizer.special
            tokens.append(f"[PAD{i}]" if piece is None else piece)
            types.append(CONTROL if special else UNUSED if piece is None else NORMAL)
        eot = tokenizer.end_of_text
        if eot is None and END_OF_TEXT in tokens:  # an older model whose corpus made it a word
            eot = tokens.index(END_OF_TEXT)
            types[eot] = CONTROL
        return tokens, types, merges, eot
    if tokenizer.kind != "char":
        raise ExportError(f"cannot export a {tokenizer.kind!r} tokenizer to GGUF: only characters and BPE")
    tokens, merges = [], {}
    for c in tokenizer.chars:
        try:
            data = c.encode("utf-8")
        except UnicodeEncodeError:
            raise ExportError("the vocabulary holds a lone surrogate (half of a UTF-16 pair), which "
                              "llama.cpp's tokenizer cannot hold") from None
        symbols = [SYMBOL_OF[b] for b in data]
        tokens.append("".join(symbols))
        for k in range(1, len(symbols)):   # join the character's bytes, left to right
            merges.setdefault(f"{''.join(symbols[:k])} {symbols[k]}", None)
    return tokens, [NORMAL] * len(tokens), list(merges), None


def never_row(weight: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> Optional[torch.Tensor]:
    """A head row whose logit is MARGIN below every other token's for any input, or None.

    The head sees x = g∘n + b, where n (the normalised state) sums to zero. The row -(K/S)/g, with
    S = Σ b/g, gives the logit -(K/S)(Σn + S) = -K whatever n is. Every other logit lies within
    ±reach (|W_j∘g|·√C + |W_j·b|, since |n| <= √C), so K = reach + MARGIN puts it out of play.
    None when S is too small for float32 to keep Σn's rounding out of it."""
    W, g, b = weight.double(), gain.double(), bias.double()
    if float(g.abs().min()) == 0.0:
        return None
    C, ratio = g.numel(), b / g
    S = float(ratio.sum())
    reach = float(((W * g).norm(dim=1) * math.sqrt(C) + (W @ b).abs()).max())
    if S == 0.0:
        return None
    scale = (reach + MARGIN) / abs(S)
    rounding = scale * (C + float(ratio.abs().sum())) * 1e-6   # float32 sums, generously
    if not math.isfinite(scale) or rounding > MARGIN / 2:
        return None
    return (-(reach + MARGIN) / S / g).float()


def _gpt2(config: ModelConfig, sd: dict[str, torch.Tensor], context: int) -> dict[str, np.ndarray]:
    out = _shared(config, sd)
    table = sd["wpe.weight"]   # (block, C), padded to (context, C) with its last row
    out["position_embd.weight"] = torch.cat([table, table[-1:].expand(context - len(table), -1)])
    for i in range(config.n_layer):
        for part in ("weight", "bias"):
            out[f"blk.{i}.attn_qkv.{part}"] = sd[f"h.{i}.attn.c_attn.{part}"]   # rows [q | k | v]
    return {k: v.float().contiguous().numpy() for k, v in out.items()}


def _starcoder2(config: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    out = _shared(config, sd)
    for i in range(config.n_layer):
        for part in ("weight", "bias"):
            q, k, v = sd[f"h.{i}.attn.c_attn.{part}"].split(config.n_embd, dim=0)
            out[f"blk.{i}.attn_q.{part}"], out[f"blk.{i}.attn_k.{part}"], out[f"blk.{i}.attn_v.{part}"] = q, k, v
    return {k: v.float().contiguous().numpy() for k, v in out.items()}


# ours -> llama.cpp's, in every block (gguf's MODEL_TENSOR names: blk.N.attn_norm, ...)
BLOCK = {"ln_1": "attn_norm", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
         "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}


def _shared(config: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {"token_embd.weight": sd["wte.weight"], "output_norm.weight": sd["ln_f.weight"],
           "output_norm.bias": sd["ln_f.bias"], "output.weight": sd["lm_head.weight"]}
    for i in range(config.n_layer):
        for ours, theirs in BLOCK.items():
            for part in ("weight", "bias"):
                out[f"blk.{i}.{theirs}.{part}"] = sd[f"h.{i}.{ours}.{part}"]
    return out


def write(plan: Plan, path: Path, name: str) -> None:
    """The GGUF file: metadata as llama.cpp's converter writes it, float32 tensors."""
    import gguf
    config, arch = plan.config, plan.arch
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_description("a small GPT trained from scratch with GPT Playground")
    writer.add_block_count(config.n_layer)
    writer.add_context_length(plan.context)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(int(plan.tensors["blk.0.ffn_up.weight"].shape[0]))
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_head)
    writer.add_layer_norm_eps(plan.eps)
    if arch == "starcoder2":
        writer.add_rope_freq_base(config.rope_base)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(plan.tokens)
    writer.add_token_types(plan.token_types)
    writer.add_token_merges(plan.merges)
    if plan.end_of_text is not None:
        writer.add_eos_token_id(plan.end_of_text)
        writer.add_bos_token_id(plan.end_of_text)   # as GPT-2: never added to prompts (below)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    for key, array in plan.tensors.items():
        writer.add_tensor(key, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def read_back(path: Path, plan: Plan) -> GPT:
    """Read the file with gguf's reader, check it holds what was meant (ExportError if not) and
    rebuild it as our GPT with the tanh GELU: the function llama.cpp computes, in float32."""
    import gguf
    reader = gguf.GGUFReader(str(path))

    def get(key: str):
        found = reader.get_field(key)
        if found is None:
            raise ExportError(f"the written GGUF file lacks {key}")
        return found.contents()
    arch = get("general.architecture")
    config = plan.config
    expected = {f"{arch}.block_count": config.n_layer, f"{arch}.context_length": plan.context,
                f"{arch}.embedding_length": config.n_embd, f"{arch}.attention.head_count": config.n_head,
                "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": plan.tokens,
                "tokenizer.ggml.merges": plan.merges, "tokenizer.ggml.add_bos_token": False}
    wrong = [key for key, value in expected.items() if get(key) != value]
    if arch != plan.arch or wrong:
        raise ExportError(f"the written GGUF file reads back differently: {arch}, {wrong}")
    tensors = {t.name: torch.from_numpy(np.array(t.data)).reshape(plan.tensors[t.name].shape)
               for t in reader.tensors if t.name in plan.tensors}
    if set(tensors) != set(plan.tensors) or len(reader.tensors) != len(plan.tensors) or any(
            not np.array_equal(tensors[k].numpy(), v) for k, v in plan.tensors.items()):
        raise ExportError("the written GGUF file's tensors read back differently")
    return rebuild(tensors, config, float(get(f"{arch}.attention.layer_norm_epsilon")), len(plan.tokens))


def rebuild(tensors: dict[str, torch.Tensor], config: ModelConfig, eps: float, vocab: int) -> GPT:
    """Our GPT from llama.cpp's tensors (the inverse of _gpt2 / _starcoder2), tanh GELU, no head
    bias, untied: what llama.cpp's graph computes, written as our model."""
    rebuilt = config.replace(vocab_size=vocab, activation="gelu_tanh", head_bias=False, tie_embeddings=False,
                             dropout=0.0)
    sd = {"wte.weight": tensors["token_embd.weight"], "ln_f.weight": tensors["output_norm.weight"],
          "ln_f.bias": tensors["output_norm.bias"], "lm_head.weight": tensors["output.weight"]}
    if config.position == "learned":
        sd["wpe.weight"] = tensors["position_embd.weight"][: config.block_size]
    for i in range(config.n_layer):
        for ours, theirs in BLOCK.items():
            for part in ("weight", "bias"):
                sd[f"h.{i}.{ours}.{part}"] = tensors[f"blk.{i}.{theirs}.{part}"]
        for part in ("weight", "bias"):
            if config.position == "learned":
                sd[f"h.{i}.attn.c_attn.{part}"] = tensors[f"blk.{i}.attn_qkv.{part}"]
            else:
                sd[f"h.{i}.attn.c_attn.{part}"] = torch.cat([tensors[f"blk.{i}.attn_{x}.{part}"] for x in "qkv"])
    model = GPT(rebuilt)
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise ExportError(f"the GGUF file's tensors do not make the model: {exc}") from None
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = eps
    return model.eval()


def tokenizer_of(path: Path):
    """The file's tokenizer as llama.cpp builds it (GPT-2's byte-level BPE from its tokens and
    merges), in Hugging Face tokenizers: a check that our ids survive the trip."""
    import gguf
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    reader = gguf.GGUFReader(str(path))
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    types = reader.get_field("tokenizer.ggml.token_type").contents()
    vocab = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind == NORMAL}
    merges = [tuple(m.split(" ", 1)) for m in reader.get_field("tokenizer.ggml.merges").contents()
              if m != NO_MERGE]
    tok = HFTokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok
