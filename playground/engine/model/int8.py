"""8-bit weights for the cached decoding step (opt-in: `generate --int8`, `serve --int8`).

Generating one token at a time from a large model reads every weight once per token, so its
speed is the weights' bytes over the memory bandwidth; a byte a weight instead of four reads a
quarter. Each linear's weight is stored as int8 per output row (symmetric: scale = max |w| / 127)
in fbgemm's packed form, and each call quantizes its input on the fly (torch's dynamic quantized
linear, the kernel `torch.ao.quantization.quantize_dynamic` uses; 7-bit inputs, as that function
chooses for fbgemm, so the int16 sums inside the kernel cannot saturate). The prompt's prefill and
a learned-position window past the block still run through GPT.forward in float32.

Not exact: on GPT-2 small's shape (random weights) log-probabilities moved by up to 0.12 and the
greedy choice stayed the same 63 times in 64 (bench decode); tests/engine/test_int8.py holds a
small model within 0.05. Measured: 1.40x float32's tokens/s there, but only 29% of what a quarter
of the bytes would allow: the kernel quantizes each input row and its int8 sums cost more than the
bytes they save. Needs torch's fbgemm (x86 CPUs); elsewhere it refuses.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch


def refusal(engines: Optional[list[str]] = None) -> str:
    """Why 8-bit weights cannot run here (on this torch's quantized engines); '' when they can."""
    engines = torch.backends.quantized.supported_engines if engines is None else engines
    if "fbgemm" not in engines and "x86" not in engines:
        return ("8-bit weights need torch's fbgemm kernels (x86 CPUs); this torch has "
                + (", ".join(e for e in engines if e != "none") or "no quantized engine"))
    return ""


def pack(weight: torch.Tensor, bias: Optional[torch.Tensor]):
    """A linear layer's weight (out, in) and bias as fbgemm's packed int8 weight."""
    w = weight.detach().float().cpu()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    zero = torch.zeros(w.size(0), dtype=torch.long)
    with warnings.catch_warnings():  # torch marks its quantized tensors deprecated; 2.13 has them
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float().cpu())


def linear(x: torch.Tensor, packed, bias: None = None) -> torch.Tensor:
    """F.linear's place in the cached step: the bias is inside `packed`."""
    return torch.ops.quantized.linear_dynamic(x, packed, True)


__all__ = ["linear", "pack", "refusal"]
