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


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
