"""Preference pairs and a preference run's starting settings, apart from the DPO trainer
(preference.py) because nothing here needs torch: the window's Preferences tab and its form
import these while the window opens, and torch loads after it is on screen (ui/app.py).

Pairs files are JSON Lines with the field names TRL and other tools use: {"prompt", "chosen",
"rejected"}, one object a line.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from playground.engine.config import TrainConfig
from playground.engine.errors import ConfigError

FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    line: int = 0  # where it was read (0: made here)

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


def parse_pairs(text: str, name: str = "the pairs file") -> list[Pair]:
    """JSON Lines of {"prompt", "chosen", "rejected"}; ConfigError naming the line for a bad one."""
    pairs = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: each line is one JSON object with prompt, chosen and rejected")
        missing = [f for f in FIELDS if f not in obj]
        if missing:
            raise ConfigError(f"{where}: no {' or '.join(repr(m) for m in missing)} (each line needs "
                              "\"prompt\", \"chosen\" and \"rejected\")")
        for field in FIELDS:
            if not isinstance(obj[field], str):
                raise ConfigError(f"{where}: {field!r} must be text, not {type(obj[field]).__name__} "
                                  "(conversation lists are not read)")
        for field in ("chosen", "rejected"):
            if not obj[field]:
                raise ConfigError(f"{where}: the {field} completion is empty")
        if obj["chosen"] == obj["rejected"]:
            raise ConfigError(f"{where}: chosen and rejected are the same text: a tie teaches nothing, "
                              "leave it out")
        pairs.append(Pair(obj["prompt"], obj["chosen"], obj["rejected"], number))
    if not pairs:
        raise ConfigError(f"{name} holds no pairs: write one JSON object a line with prompt, chosen and rejected")
    return pairs


def read_pairs(path) -> list[Pair]:
    from playground.engine.data.corpus import read_text_file
    return parse_pairs(read_text_file(path), Path(path).name)


def write_pairs(path, pairs: list[Pair]) -> Path:
    """The pairs as JSON Lines, written to a temporary file and moved into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for pair in pairs:
                f.write(json.dumps(pair.to_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# a preference run's own starting settings (flags and the window's form change them)
DEFAULTS = {"max_steps": 1000, "learning_rate": 1e-3, "min_lr": 1e-4, "eval_interval": 100, "warmup_steps": 10,
            "batch_size": 32, "optimizer": "adamw", "weight_decay": 0.0, "grad_clip": 1.0, "threads": 0, "ema": 0.0}


def preference_settings(base, **edits) -> TrainConfig:
    """The training settings of a preference run on the checkpoint `base`."""
    return (base.train_config or TrainConfig()).replace(**DEFAULTS).edited(**edits)
