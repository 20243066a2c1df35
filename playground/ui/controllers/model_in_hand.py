"""The model in hand, as a small value: a model being trained, or one opened from a file. Both
answer the same questions, so nothing else asks which one it is. CurrentModel holds it and is
set on the GUI thread only; the controllers and views read it from there."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, QThread, Signal


class TrainedModel:
    """A trainer's model: copies are taken between training steps."""

    def __init__(self, trainer):
        self.trainer = trainer

    @property
    def config(self):
        return self.trainer.model_cfg

    @property
    def tokenizer(self):
        return self.trainer.corpus.tokenizer

    @property
    def train_config(self):
        return self.trainer.train_cfg

    @property
    def step(self) -> int:
        return self.trainer.step

    @property
    def start_char(self) -> str:
        return self.trainer.start_char

    @property
    def corpus(self) -> str:
        return self.trainer.corpus.name

    def snapshot(self):
        """A model to generate from while training goes on (call it off the GUI thread); a
        LoRA fine-tune's with its adapters merged, an ordinary model as its file will hold."""
        from playground.engine.model.lora import has_adapters, merged
        if has_adapters(self.trainer.model):
            with self.trainer.lock:
                return merged(self.trainer.model).eval()
        return self.trainer.snapshot()

    def checkpoint(self):
        return self.trainer.checkpoint()


class OpenedModel:
    """A model opened from a file, not trained since."""

    def __init__(self, ckpt):
        self.ckpt = ckpt
        ckpt.model.eval()

    @property
    def config(self):
        return self.ckpt.model_config

    @property
    def tokenizer(self):
        return self.ckpt.tokenizer

    @property
    def train_config(self):
        return self.ckpt.train_config

    @property
    def step(self) -> int:
        return int(self.ckpt.state.get("step", 0))

    @property
    def start_char(self) -> Optional[str]:
        return self.ckpt.state.get("start_char")

    @property
    def corpus(self) -> str:
        return str(self.ckpt.state.get("corpus") or "model")

    def snapshot(self):
        return self.ckpt.model  # nothing trains it: training starts from a copy

    def checkpoint(self):
        return self.ckpt


class CurrentModel(QObject):
    changed = Signal()  # a new model: trained, continued, opened or reset

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._value = None
        self.unsaved = False  # trained since it was new, opened or last saved

    @property
    def value(self):
        """The TrainedModel or OpenedModel in hand, or None."""
        return self._value

    def set(self, value) -> None:
        """A new model in hand; one being trained has not been saved, an opened one has."""
        if QThread.currentThread() is not self.thread():
            raise RuntimeError("the current model is set on the GUI thread only")
        self._value = value
        self.unsaved = isinstance(value, TrainedModel)
        self.changed.emit()

    def mark_saved(self) -> None:
        self.unsaved = False

    def describe(self) -> str:
        """The model in hand in a few words: 'the model in hand (step 500, validation 0.0633)'."""
        if self._value is None:
            return "no model"
        value = self._value
        ckpt_state = value.ckpt.state if isinstance(value, OpenedModel) else {}
        val = (value.trainer.last_val_loss if isinstance(value, TrainedModel) else ckpt_state.get("val_loss"))
        extra = f", validation {val:.4f}" if isinstance(val, (int, float)) else ""
        return f"the model in hand (step {value.step:,}{extra})"

    @property
    def step(self) -> int:
        return self._value.step if self._value is not None else 0

    @property
    def tokenizer(self):
        return self._value.tokenizer if self._value is not None else None
