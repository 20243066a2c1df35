"""The learning-rate schedule, without torch: the window previews it before torch is loaded."""

from __future__ import annotations

import math
from typing import Optional

from playground.engine.config import TrainConfig


def lr_at(step: int, total: int, cfg: TrainConfig, peak: Optional[float] = None) -> float:
    """Linear warm-up to the peak, then cosine decay to min_lr (scaled) at the last step."""
    peak = cfg.learning_rate if peak is None else peak
    floor = cfg.min_lr * peak / cfg.learning_rate
    if step < cfg.warmup_steps:
        return peak * (step + 1) / (cfg.warmup_steps + 1)
    span = max(total - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)


def schedule(cfg: TrainConfig) -> list[float]:
    """The learning rate at every step of a run."""
    return [lr_at(step, cfg.max_steps, cfg) for step in range(cfg.max_steps)]
