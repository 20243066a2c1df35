"""torch's Muon, with its Newton-Schulz iteration in float32 on the CPU.

torch.optim.Muon orthogonalises each update in bfloat16. A GPU does that fast; a CPU without
bfloat16 matrix units does not: on this machine (AVX2, no AVX-512 BF16) a 512x512 bfloat16
matmul takes 208 ms against 1.7 ms in float32, which made shakespeare-fast's 300 steps take
197 s instead of ~30 s. Same algorithm, same state (momentum_buffer) and settings as torch's,
so a checkpoint moves between the two; tests hold it to the update computed in float64.
"""

from __future__ import annotations

import math

import torch


def orthogonalize(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float) -> torch.Tensor:
    """The quintic Newton-Schulz iteration torch's Muon uses, in float32."""
    a, b, c = coefficients
    x = update.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(update.dtype)


class Muon(torch.optim.Muon):
    """torch.optim.Muon whose orthogonalisation runs in float32."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = orthogonalize(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * adjusted_ratio(group["adjust_lr_fn"], p.shape))
        return loss


def adjusted_ratio(adjust_lr_fn, shape) -> float:
    """torch's Muon learning-rate adjustment for a matrix of this shape."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0
