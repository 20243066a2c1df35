"""A moving average of a run's weights (TrainConfig.ema), evaluated and kept in their place.

On a text the model sees many times over (Tiny Shakespeare in five minutes is seven passes),
the weights at any one step carry the noise of their last few batches; their exponential
moving average over the last few hundred steps scores lower on held-out text (issue 26:
1.4880 -> 1.4833 nats per character for the five-minute recipe). Each evaluation scores the
average, so the best weights kept are averaged ones, and a run ends with the average in hand.
"""

from __future__ import annotations

import torch


class WeightAverage:
    """The average of `weights` (a run's trainable tensors), updated after every step.

    The share carried over grows as (1 + n) / (10 + n) after n steps, up to `decay`, so the
    average does not linger on the weights the run started from (TensorFlow's
    ExponentialMovingAverage does the same with num_updates)."""

    def __init__(self, weights: list[torch.Tensor], decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"the average's decay must be between 0 and 1, not {decay}")
        self.decay, self.steps = decay, 0
        self.average = [w.detach().clone() for w in weights]

    def carried(self) -> float:
        """The share of the average the next update carries over."""
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self, weights: list[torch.Tensor]) -> None:
        share = self.carried()
        self.steps += 1
        torch._foreach_lerp_(self.average, [w.detach() for w in weights], 1 - share)

    @torch.no_grad()
    def put_in(self, weights: list[torch.Tensor]) -> None:
        """The average becomes the weights."""
        torch._foreach_copy_(weights, self.average)

    @torch.no_grad()
    def swap_in(self, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """The average in the weights' place (an evaluation, a copy taken mid-run); returns
        theirs, for give_back."""
        held = [w.detach().clone() for w in weights]
        torch._foreach_copy_(weights, self.average)
        return held

    @staticmethod
    @torch.no_grad()
    def give_back(weights: list[torch.Tensor], held: list[torch.Tensor]) -> None:
        torch._foreach_copy_(weights, held)
