"""Scoring a model on a whole text: every position predicted once, in windows of the block size."""

from __future__ import annotations

from typing import Optional

import torch

from playground.engine.model import GPT


@torch.no_grad()
def full_loss(model: GPT, ids: torch.Tensor, block_size: int, batch_size: int = 64) -> Optional[float]:
    """Mean loss over a whole split: consecutive windows, every character predicted once.

    The most exact figure for a held-out tail (random-batch evaluation estimates the same
    quantity with noise). None when the split is shorter than one window.
    """
    n = (len(ids) - 1) // block_size
    if n == 0:
        return None
    ids = ids[: n * block_size + 1].long()
    x = ids[:-1].view(n, block_size)
    y = ids[1:].view(n, block_size)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for i in range(0, n, batch_size):
            _, loss = model(x[i:i + batch_size], y[i:i + batch_size])
            total += loss.item() * len(x[i:i + batch_size])
    finally:
        model.train(was_training)
    return total / n
