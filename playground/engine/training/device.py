"""Device choice: cpu, cuda or mps, with a clear message when the asked one is absent."""

from __future__ import annotations

import torch

from playground.engine.errors import ConfigError


def check_device(name: str) -> torch.device:
    """Resolve 'auto' | 'cpu' | 'cuda' | 'mps' to a device that exists here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, but this torch build sees no CUDA GPU")
        return torch.device("cuda")
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device mps was asked for, but Apple's Metal backend is not available")
        return torch.device("mps")
    raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
