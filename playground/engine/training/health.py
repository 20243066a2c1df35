"""Is training healthy? Plain-words hints from the losses of a run, one per kind of trouble:
the loss blew up (far above random guessing, or not a number), it is stuck at random guessing,
it is rising, or validation turned up while training loss still falls (overfitting). Each hint
names what to try. Pure functions of the numbers: the window shows them, the CLI could too."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

STALL_STEPS = 200     # a run this long that is still at random guessing is stuck
BLOWN_UP = 1.5        # a loss this many times random guessing's is worse than not learning at all
RECENT = 20           # steps the blow-up check averages: a single noisy step is not a blow-up


def diagnose(losses: Sequence[float], vocab_size: int, status: Optional[str] = None) -> str:
    """A hint in plain words, or '' when the run looks healthy. losses: each step's training
    loss (nats per token) since the model was new; status: the run's end, if it has ended."""
    losses = np.asarray(losses, dtype=float)
    guess = math.log(vocab_size) if vocab_size > 1 else None
    if status == "diverged" or (len(losses) and not np.isfinite(losses[-1])):
        return ("The loss blew up (it stopped being a number): the learning rate is too high. "
                "Lower it 3 to 10 times and Train a new model.")
    if guess is not None and len(losses) >= RECENT:
        recent = float(np.mean(losses[-RECENT:]))
        if recent > BLOWN_UP * guess:
            return (f"The loss blew up: {recent:,.1f} is far above random guessing ({guess:.2f}). "
                    "The learning rate is too high: lower it about 10 times and Train a new model.")
    if guess is not None and len(losses) >= STALL_STEPS:
        recent = float(np.mean(losses[-50:]))
        if 0.95 * guess <= recent <= 1.1 * guess:
            return (f"Stuck at random guessing (ln({vocab_size}) = {guess:.2f}) after {len(losses):,} "
                    "steps: nothing is being learned. Try a higher learning rate (3 to 10 times) "
                    "or a shorter warm-up.")
    if len(losses) >= 100:
        early, late = float(np.mean(losses[-100:-50])), float(np.mean(losses[-50:]))
        if late > early * 1.25:
            return ("The loss is rising: the learning rate may be too high for this model. "
                    "Lower it, or train fewer steps.")
    return ""


def overfitting(evals: Sequence[tuple[int, float, Optional[float]]], keep: str = "best") -> str:
    """Words when the validation loss has turned up while the training loss still falls;
    evals are (step, training loss, validation loss) of each evaluation."""
    points = [(s, t, v) for s, t, v in evals
              if v is not None and t is not None and math.isfinite(v) and math.isfinite(t)]
    if len(points) < 3:
        return ""
    best = min(points, key=lambda p: p[2])
    step, train, val = points[-1]
    if step == best[0] or val < best[2] * 1.02 or train >= best[1]:
        return ""
    kept = (f"the best weights (step {best[0]:,}) are what the run keeps" if keep == "best" else
            f"set Keep to best to end on the best weights (step {best[0]:,})")
    return (f"Overfitting: validation loss rose from {best[2]:.3f} (step {best[0]:,}) to {val:.3f} "
            f"while training loss fell to {train:.3f}: the model is memorising its text instead of "
            f"learning what generalises. Try more text, dropout, a smaller model or fewer steps; {kept}.")


FORGETTING = 1.10    # the original text's loss this many times its value before adapting


def forgetting(evals: Sequence[tuple[int, Optional[float], Optional[float]]], method: str = "full",
               replay: float = 0.0, flags: bool = False) -> str:
    """Words when adapting a model has cost it its original text: that text's held-out loss rose
    over FORGETTING times its value before the first step. evals are (step, new text's validation
    loss, original text's validation loss) of each evaluation, the first one before training.
    Names the usual remedies, the one not yet tried first (flags: as the command line's)."""
    points = [(s, v, b) for s, v, b in evals if b is not None and math.isfinite(b)]
    if len(points) < 2:
        return ""
    before, now = points[0][2], points[-1][2]
    if now <= before * FORGETTING:
        return ""
    new = points[-1][1]
    gained = (f" while the new text's fell to {new:.3f}" if new is not None and points[0][1] is not None
              and new < points[0][1] else "")
    remedies = []
    if replay < 0.5:
        setting = ("--replay " + (f"{min(2 * replay, 0.5):g}" if replay else "0.25")) if flags else (
            "raise Replay" if replay else "Replay 0.25")
        remedies.append(f"replay more of the original text ({setting}: a share of each batch from it)")
    if method == "full":
        remedies.append(f"LoRA{' (--method lora)' if flags else ''}, which changes far fewer weights")
    remedies.append("a lower learning rate or fewer steps")
    return (f"Forgetting: the original text's loss rose from {before:.3f} before adapting to {now:.3f}{gained}. "
            f"The usual remedies: {'; '.join(remedies)}.")


__all__ = ["diagnose", "overfitting", "forgetting", "STALL_STEPS", "FORGETTING"]
