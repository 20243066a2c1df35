"""Model, training and sampling settings: frozen dataclasses whose checks speak plain words.

Every check names the field, so a learner can fix it; nothing out of range reaches torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from playground.engine.errors import ConfigError

# Hard upper bounds keep a typo (width 1e9) from freezing the machine before torch even starts.
MAX_LAYERS = 48
MAX_HEADS = 64
MAX_WIDTH = 4096
MAX_BLOCK = 4096
MAX_VOCAB = 1_114_112  # every Unicode code point
MAX_BATCH = 4096
MAX_STEPS = 10_000_000
MAX_THREADS = 256
MIN_BPE_VOCAB, MAX_BPE_VOCAB = 256, 65_536   # the bytes themselves (no merges) .. a large BPE
MAX_LR = 1.0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(errors: list[str], name: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value):
        errors.append(f"{name} must be a whole number, not {value!r}")
    elif not low <= value <= high:
        errors.append(f"{name} {value} is out of range: use {low} to {high:,}")


def _float_in(errors: list[str], name: str, value: Any, low: float, high: float,
              low_open: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{name} must be a number, not {value!r}")
        return False
    if not math.isfinite(value):
        errors.append(f"{name} must be a finite number, not {value}")
        return False
    if value < low or (low_open and value == low) or value > high:
        bound = f"above {low:g}" if low_open else f"from {low:g}"
        errors.append(f"{name} {value:g} is out of range: use a value {bound} up to {high:g}")
        return False
    return True


class _Checked:
    """Mixin: `check()` raises one ConfigError listing every problem that `problems()` finds."""

    def problems(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self):
        errors = self.problems()
        if errors:
            raise ConfigError("; ".join(errors))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from a dict, ignoring unknown keys; types are checked by `check()`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _setting(default: Any, label: str, *, low: Any = None, high: Any = None,
             choices: tuple = ()) -> Any:
    """A ModelConfig field with its words and its allowed values, stated once: `problems()`
    checks them, and the fast-path tests draw every field from them (new fields included)."""
    return dataclasses.field(default=default, metadata={"label": label, "low": low, "high": high,
                                                         "choices": choices})


@dataclass(frozen=True)
class ModelConfig(_Checked):
    # distinct characters the model can read and write
    vocab_size: int = _setting(65, "vocabulary size", low=1, high=MAX_VOCAB)
    # transformer blocks stacked on top of each other
    n_layer: int = _setting(2, "layers", low=1, high=MAX_LAYERS)
    # attention heads per block; n_embd must divide evenly among them
    n_head: int = _setting(4, "heads", low=1, high=MAX_HEADS)
    # width: length of each character's vector
    n_embd: int = _setting(64, "width", low=1, high=MAX_WIDTH)
    # the longest context the model sees at once
    block_size: int = _setting(32, "block size", low=1, high=MAX_BLOCK)
    # fraction of activations zeroed in training (0 for small data)
    dropout: float = _setting(0.0, "dropout", low=0.0, high=0.9)
    # "learned": GPT-2's learned absolute positions (the reference architecture).
    # "rope": rotary positions with attention limited to the last block_size characters at
    # every layer; identical on training windows, and it lets generation keep a rolling cache.
    position: str = _setting("learned", "position scheme", choices=("learned", "rope"))
    # the output head's bias (the reference has one); without it every export to Hugging Face
    # transformers is exact, whose GPT-2 and Starcoder2 heads have none
    head_bias: bool = _setting(True, "head bias", choices=(True, False))

    def problems(self) -> list[str]:
        errors: list[str] = []
        for f in dataclasses.fields(self):
            _field_problems(errors, f, getattr(self, f.name))
        if errors:
            return errors
        if self.n_embd % self.n_head:
            errors.append(f"width {self.n_embd} must be divisible by heads {self.n_head}")
        elif self.position == "rope" and self.head_size % 2:
            errors.append(f"rotary positions need an even head size; width {self.n_embd} / "
                          f"heads {self.n_head} is odd")
        return errors

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head


def _field_problems(errors: list[str], f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    if meta["choices"]:
        if value not in meta["choices"] or type(value) is not type(meta["choices"][0]):
            allowed = " or ".join(repr(c) for c in meta["choices"])
            errors.append(f"{meta['label']} {value!r} is unknown: use {allowed}")
    elif isinstance(meta["low"], int) and not isinstance(meta["low"], bool):
        _int_in(errors, meta["label"], value, meta["low"], meta["high"])
    else:
        _float_in(errors, meta["label"], value, meta["low"], meta["high"])


@dataclass(frozen=True)
class TrainConfig(_Checked):
    batch_size: int = 32         # windows of text per step
    max_steps: int = 500         # optimizer steps in the run
    learning_rate: float = 3e-3  # peak learning rate after warm-up
    min_lr: float = 3e-3         # learning rate at the end of the cosine decay
    warmup_steps: int = 0        # steps of linear warm-up from 0 to the peak
    weight_decay: float = 0.0    # AdamW decay on weight matrices (not on biases or norms)
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0       # clip the global gradient norm to this (0 turns it off)
    eval_interval: int = 100     # evaluate (and sample) every this many steps
    eval_batches: int = 20       # batches averaged for each evaluation
    val_fraction: float = 0.1    # tail of the text held out for validation
    seed: int = 1337             # seeds weights, batches and samples: same seed, same run
    threads: int = 0             # CPU threads for torch; 0 picks automatically
    sample_chars: int = 100      # characters generated at each evaluation (0 for none)
    optimizer: str = "adamw"     # "adamw", or "muon" (Muon for weight matrices, AdamW for the rest)
    muon_lr: float = 0.02        # peak learning rate of Muon's matrices when optimizer is "muon"
    keep: str = "best"           # "best": end with the weights of the lowest validation loss; "last"
    patience: int = 0            # stop after this many evaluations without a better validation loss (0: never)
    tokenizer: str = "char"      # "char": one token per character; "bpe": byte-level subwords learned from the corpus
    bpe_vocab: int = 512         # the BPE vocabulary's size, when tokenizer is "bpe" (256 = bytes only)

    def problems(self) -> list[str]:
        errors: list[str] = []
        _int_in(errors, "batch size", self.batch_size, 1, MAX_BATCH)
        _int_in(errors, "steps", self.max_steps, 1, MAX_STEPS)
        lr_ok = _float_in(errors, "learning rate", self.learning_rate, 0.0, MAX_LR, low_open=True)
        min_ok = _float_in(errors, "minimum learning rate", self.min_lr, 0.0, MAX_LR)
        if lr_ok and min_ok and self.min_lr > self.learning_rate:
            errors.append(f"minimum learning rate {self.min_lr:g} is above the learning rate "
                          f"{self.learning_rate:g}")
        _int_in(errors, "warm-up steps", self.warmup_steps, 0, MAX_STEPS)
        if _is_int(self.warmup_steps) and _is_int(self.max_steps) and self.warmup_steps > self.max_steps:
            errors.append(f"warm-up steps {self.warmup_steps} exceed the number of steps "
                          f"{self.max_steps}")
        _float_in(errors, "weight decay", self.weight_decay, 0.0, 10.0)
        _float_in(errors, "beta1", self.beta1, 0.0, 0.9999)
        _float_in(errors, "beta2", self.beta2, 0.0, 0.99999)
        _float_in(errors, "gradient clip", self.grad_clip, 0.0, 1e6)
        _int_in(errors, "evaluation interval", self.eval_interval, 1, MAX_STEPS)
        _int_in(errors, "evaluation batches", self.eval_batches, 1, 10_000)
        _float_in(errors, "validation fraction", self.val_fraction, 0.0, 0.5)
        _int_in(errors, "seed", self.seed, 0, 2**63 - 1)
        _int_in(errors, "threads", self.threads, 0, MAX_THREADS)
        _int_in(errors, "sample length", self.sample_chars, 0, 100_000)
        if self.optimizer not in ("adamw", "muon"):
            errors.append(f"optimizer {self.optimizer!r} is unknown: use 'adamw' or 'muon'")
        _float_in(errors, "Muon learning rate", self.muon_lr, 0.0, MAX_LR, low_open=True)
        if self.keep not in ("best", "last"):
            errors.append(f"keep {self.keep!r} is unknown: use 'best' or 'last'")
        _int_in(errors, "patience", self.patience, 0, 100_000)
        if self.tokenizer not in ("char", "bpe"):
            errors.append(f"tokenizer {self.tokenizer!r} is unknown: use 'char' or 'bpe'")
        _int_in(errors, "BPE vocabulary size", self.bpe_vocab, MIN_BPE_VOCAB, MAX_BPE_VOCAB)
        return errors

    def edited(self, **changes: Any) -> "TrainConfig":
        """These settings with a user's edits, by the one rule the CLI and the window share: a
        new peak learning rate moves min_lr with it (the decay keeps its ratio), and a run made
        shorter than its warm-up gets a tenth of its steps as warm-up, unless that was given."""
        new = self.replace(**changes)
        lr = changes.get("learning_rate")
        if "min_lr" not in changes and _usable_rate(lr) and _usable_rate(self.learning_rate):
            new = new.replace(min_lr=min(self.min_lr * lr / self.learning_rate, lr))
        if "warmup_steps" not in changes and _is_int(new.max_steps) and \
                new.max_steps >= 1 and new.warmup_steps > new.max_steps:
            new = new.replace(warmup_steps=new.max_steps // 10)
        return new


def _usable_rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and value > 0


@dataclass(frozen=True)
class SampleConfig(_Checked):
    max_new_chars: int = 200   # characters to generate (the last token is cut to fit)
    max_new_tokens: int = 0    # or stop after this many tokens, when not 0 (a BPE token is several characters)
    temperature: float = 1.0   # 0 always picks the likeliest character; higher is wilder
    top_k: int = 0             # keep only the k likeliest characters (0 keeps all)
    top_p: float = 1.0         # keep the smallest set whose odds add up to p (1 keeps all)
    seed: int = 1337

    def problems(self) -> list[str]:
        errors: list[str] = []
        _int_in(errors, "number of characters", self.max_new_chars, 0, 1_000_000)
        _int_in(errors, "number of tokens", self.max_new_tokens, 0, 1_000_000)
        _float_in(errors, "temperature", self.temperature, 0.0, 100.0)
        _int_in(errors, "top-k", self.top_k, 0, MAX_VOCAB)
        _float_in(errors, "top-p", self.top_p, 0.0, 1.0, low_open=True)
        _int_in(errors, "seed", self.seed, 0, 2**63 - 1)
        return errors


def too_short(block_size: int, n_train: int, unit: str = "characters") -> str:
    """Why a training text of this many ids cannot train this block size; '' when it can."""
    if n_train >= block_size + 1:
        return ""
    return (f"block size {block_size} is longer than the training text ({n_train} "
            f"{unit}): it needs at least block size + 1 {unit}")


def check_fits_text(model: ModelConfig, train: TrainConfig, n_train: int,
                    unit: str = "characters") -> None:
    """Raise ConfigError when the settings do not fit a training text of this many ids."""
    errors = [e for e in [too_short(model.block_size, n_train, unit)] if e]
    if train.batch_size > max(n_train, 1):
        errors.append(f"batch size {train.batch_size} is larger than the training text "
                      f"({n_train} {unit})")
    if errors:
        raise ConfigError("; ".join(errors))
