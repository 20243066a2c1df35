"""What every bench module shares: a result row, the median, a child process's environment."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    name: str
    target: str
    measured: str
    reference: str
    passed: Optional[bool]          # None: informational
    details: dict = field(default_factory=dict)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def median_step(elapsed: list[float], settle: int) -> float:
    """The median gap between consecutive steps' elapsed times after the first `settle` steps
    (their one-time costs), so evaluation pauses drop out; nan when too few steps."""
    gaps = [b - a for a, b in zip(elapsed[settle:], elapsed[settle + 1:])]
    return statistics.median(gaps) if gaps else float("nan")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
