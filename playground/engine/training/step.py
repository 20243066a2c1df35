"""How one training step computes the loss and every gradient (autograd on GPT.forward) and
which optimizer applies them: torch's, or on the CPU the flat AdamW (one fused call over a
buffer instead of one per parameter). `choose_path` picks once per trainer; nothing else in the
trainer branches on it.

A hand-written forward and backward once sat here too. Measured side by side against autograd
with the flat AdamW (2026-12-04, torch 2.13, 2 cores) it was 5-7% faster on the learned-position
presets that used it (seed, arithmetic, shakespeare-cpu; 16% on tiny), less than the 15% that was
worth a second statement of the block's arithmetic, so it went.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from playground.engine.config import TrainConfig
from playground.engine.model.flat_adamw import FLAT_ADAMW, FlatAdamW
from playground.engine.model.gpt import GPT
from playground.engine.model.optimizers import build_optimizers


@dataclass
class TrainingPath:
    name: str                    # for logs and tests: which fast paths are in use
    step: Callable               # (x, y, weights) -> loss tensor, with every .grad set
    optimizers: list             # (optimizer, peak learning rate) pairs
    weights: list                # the tensors holding every weight (FlatAdamW: a few buffers)
    note: str = ""               # why a fast path stepped aside, when one did


def autocast(device: torch.device):
    """bf16 autocast on CUDA only. A CPU without bfloat16 units (the AMD EPYC these figures
    first came from) multiplies bf16 far slower; one with AMX (an Intel Xeon) multiplies it
    4-15x faster, yet autocast made our training steps slower there (31 -> 38 ms on
    shakespeare-cpu): at these sizes the casts cost more than the matmuls save."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class AutogradStep:
    """GPT.forward then backward. Gradients accumulate into each parameter's existing .grad in
    place (the optimizers zero them in place), which is what lets the flat AdamW keep every
    gradient as a view of one buffer."""

    def __init__(self, train_model: torch.nn.Module, optimizers: list, device: torch.device):
        self.train_model, self.optimizers, self.device = train_model, optimizers, device

    def __call__(self, x: torch.Tensor, y: torch.Tensor, w: Optional[torch.Tensor]) -> torch.Tensor:
        for opt, _ in self.optimizers:
            opt.zero_grad(set_to_none=True)
        with autocast(self.device):
            _, loss = self.train_model(x, y, weights=w)
        loss.backward()
        return loss


def choose_path(model: GPT, train_model: torch.nn.Module, cfg: TrainConfig, device: torch.device,
                plain_only: bool) -> TrainingPath:
    """Autograd, with the flat AdamW where it was verified for this model and device and the
    optimizer is AdamW; torch's optimizers alone when plain_only (asked for, torch.compile,
    DistributedDataParallel, whose gradient buckets are its own)."""
    optimizers = build_optimizers(model, cfg)
    refusal = ("plain path asked for" if plain_only else
               "the optimizer is not AdamW" if cfg.optimizer != "adamw" else
               FLAT_ADAMW.refusal(model.config, device))
    if refusal:
        return TrainingPath("autograd", AutogradStep(train_model, optimizers, device), optimizers,
                            list(model.parameters()), refusal)
    # one fused AdamW call on a flat buffer instead of one per parameter; it moves the
    # parameters (and their gradients) into its buffers
    optimizers = [(FlatAdamW(opt, model), peak) for opt, peak in optimizers]
    weights = [flat for opt, _ in optimizers for flat in opt.params]
    return TrainingPath("autograd + flat AdamW", AutogradStep(train_model, optimizers, device), optimizers, weights)
