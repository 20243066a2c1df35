"""The best weights of a run by validation loss, kept as nanoGPT keeps its best checkpoint.

At each evaluation with a lower validation loss than any before, the weights and the optimizer
state are copied aside; at the end of the run (keep="best") they come back, so the model in
hand and what Save writes are the best ones, not the last. Patience stops a run whose
validation loss has not improved for that many evaluations.
"""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch


class BestKeeper:
    def __init__(self) -> None:
        self.val_loss = math.inf
        self.step: Optional[int] = None       # the step of the best weights
        self.train_loss: Optional[float] = None
        self.stale = 0                        # evaluations since the last improvement
        self._weights: Optional[list[torch.Tensor]] = None
        self._optimizers: list[dict] = []

    def observe(self, step: int, val_loss: Optional[float], train_loss: Optional[float],
                weights: list[torch.Tensor], optimizers: list) -> bool:
        """Record an evaluation; copy the weights aside when it is the best so far."""
        if val_loss is None or not math.isfinite(val_loss):
            return False
        if val_loss >= self.val_loss:
            self.stale += 1
            return False
        with torch.no_grad():
            if self._weights is None:
                self._weights = [w.detach().clone() for w in weights]
            else:
                torch._foreach_copy_(self._weights, weights)
        self._optimizers = [copy.deepcopy(opt.state_dict()) for opt, _ in optimizers]
        self.val_loss, self.step, self.train_loss, self.stale = val_loss, step, train_loss, 0
        return True

    def out_of_patience(self, patience: int) -> bool:
        return patience > 0 and self.stale >= patience

    def restore(self, weights: list[torch.Tensor], optimizers: list) -> None:
        """Put the best weights (and the optimizer state that went with them) back."""
        with torch.no_grad():
            torch._foreach_copy_(weights, self._weights)
        for (opt, _), state in zip(optimizers, self._optimizers):
            opt.load_state_dict(state)
