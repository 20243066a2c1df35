"""What training reports: small frozen records of plain numbers and strings, never tensors.

The CLI prints them, the Qt worker emits them; both see exactly the same stream.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional


def perplexity(loss: Optional[float]) -> Optional[float]:
    """e^loss: how many characters the model is effectively choosing between."""
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 700.0))


@dataclass(frozen=True)
class Started:
    params: int
    vocab_size: int
    n_train: int             # tokens in the training split (characters, for a character model; pairs, DPO)
    n_val: int               # tokens held out (0: validation unavailable; pairs, DPO)
    first_step: int          # 0 for a new model, more when continuing
    last_step: int           # the run ends after this step
    threads: int
    message: str = ""        # e.g. why validation is unavailable
    tokenizer: str = "char"  # "char" or "bpe": what one token is
    chars_per_token: float = 1.0   # of the validation text (the training text when none)
    ema: float = 0.0         # evaluations score a moving average of the weights (TrainConfig.ema; 0: no)


@dataclass(frozen=True)
class Step:
    step: int
    loss: float
    lr: float
    grad_norm: float
    clipped: bool            # the gradient was scaled down to the clip value
    tokens_per_s: float
    elapsed_s: float


@dataclass(frozen=True)
class Eval:
    step: int
    train_loss: float
    val_loss: Optional[float]   # None when the text is too short for a validation split
    elapsed_s: float
    best_step: Optional[int] = None  # the step of the lowest validation loss so far
    task_accuracy: Optional[float] = None  # share of the corpus's held-out tasks answered (0-1)
    train_bpc: Optional[float] = None  # the losses in bits per character: comparable across
    val_bpc: Optional[float] = None    # tokenizers (a loss is per token, in nats)
    base_val_loss: Optional[float] = None  # adapting a model: the loss on its original text's
    # held-out part, which shows what the new text costs it (forgetting)

    @property
    def train_ppl(self) -> Optional[float]:
        return perplexity(self.train_loss)

    @property
    def val_ppl(self) -> Optional[float]:
        return perplexity(self.val_loss)


@dataclass(frozen=True)
class PreferenceEval:
    """An evaluation of a preference run (DPO): on a fixed sample of its training pairs and on
    the held-out ones, the loss, the share the model prefers as the pairs do (reward margin > 0)
    and the mean reward margin; what it costs on the original text; the corpus's tasks."""
    step: int
    loss: Optional[float]
    accuracy: Optional[float]
    margin: Optional[float]
    heldout_loss: Optional[float]
    heldout_accuracy: Optional[float]
    heldout_margin: Optional[float]
    elapsed_s: float
    base_val_loss: Optional[float] = None   # the model's original text's held-out loss
    task_accuracy: Optional[float] = None   # share of the corpus's held-out tasks answered (0-1)


@dataclass(frozen=True)
class Sample:
    step: int
    text: str                   # written from the corpus's first character, same seed each time
    answers: tuple = ()         # a few held-out tasks: (prompt, expected, the model's answer)


@dataclass(frozen=True)
class Done:
    status: str                 # "completed" | "stopped" | "early-stopped" | "diverged"
    step: int                   # the step of the weights in hand (the best, with keep="best")
    params: int
    final_loss: Optional[float]
    final_val_loss: Optional[float]
    train_seconds: float        # wall time inside the training loop (evaluations included)
    tokens: int
    message: str = ""
    peak_rss_mb: Optional[float] = None  # this process's resident-memory high-water mark
    best_step: Optional[int] = None      # the step of the lowest validation loss of the run
    best_val_loss: Optional[float] = None
    last_step: Optional[int] = None      # how far the run went (step may be the best one's)


def peak_rss_mb() -> Optional[float]:
    """VmHWM from /proc (Linux). Not ru_maxrss: Linux carries that over exec from the parent."""
    return proc_status_mb("VmHWM")


def proc_status_mb(field: str) -> Optional[float]:
    """A memory field of /proc/self/status (VmRSS, VmHWM...) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


Event = Started | Step | Eval | PreferenceEval | Sample | Done


def to_json_dict(event: Event) -> dict:
    """One flat JSON-ready dict per event, with the keys the --log-json format promises."""
    d = {"event": "preference_eval" if isinstance(event, PreferenceEval) else type(event).__name__.lower(),
         **asdict(event)}
    if isinstance(event, Eval):
        d["loss"] = event.train_loss
        d["train_ppl"], d["val_ppl"] = event.train_ppl, event.val_ppl
    if isinstance(event, Step):
        d["val_loss"] = None
    if isinstance(event, Done):
        d["loss"], d["val_loss"] = event.final_loss, event.final_val_loss
        d["elapsed_s"] = event.train_seconds
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
