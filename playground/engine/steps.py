"""How one training step computes the loss and every gradient: autograd on GPT.forward, or the
hand-written CPU step with the flat AdamW. `choose_path` picks once per trainer; nothing else
in the trainer branches on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from playground.engine.config import TrainConfig
from playground.engine.flat import FLAT_ADAMW, FlatAdamW
from playground.engine.handstep import HAND_STEP, HandStep
from playground.engine.model import GPT
from playground.engine.optim import build_optimizers


@dataclass
class TrainingPath:
    name: str                    # for logs and tests: which fast paths are in use
    step: Callable               # (x, y, weights) -> loss tensor, with every .grad set
    optimizers: list             # (optimizer, peak learning rate) pairs
    weights: list                # the tensors holding every weight (FlatAdamW: a few buffers)
    note: str = ""               # why a fast path stepped aside, when one did


def autocast(device: torch.device):
    """bf16 autocast on CUDA only: on this kind of CPU (no AVX-512) bf16 is far slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class AutogradStep:
    """GPT.forward then backward: the reference every fast path is held to."""

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
    """The hand-written step (and, with AdamW, the flat AdamW) where they were verified for
    this model and device; autograd otherwise, or when plain_only (autograd asked for,
    torch.compile, DistributedDataParallel)."""
    optimizers = build_optimizers(model, cfg)
    refusal = "plain path asked for" if plain_only else HAND_STEP.refusal(model.config, device)
    if refusal:
        return TrainingPath("autograd", AutogradStep(train_model, optimizers, device), optimizers,
                            list(model.parameters()), refusal)
    name, weights = "hand-written step", list(model.parameters())
    if cfg.optimizer == "adamw" and FLAT_ADAMW.applies(model.config, device):
        # one fused AdamW call on a flat buffer instead of one per parameter
        optimizers = [(FlatAdamW(opt, model), peak) for opt, peak in optimizers]
        weights = [flat for opt, _ in optimizers for flat in opt.params]
        name += " + flat AdamW"
    # built after FlatAdamW, which moves the parameters into its buffers
    return TrainingPath(name, HandStep(model), optimizers, weights)
