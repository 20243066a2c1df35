"""The training status line and progress bar, refreshed on a timer from the latest values. Both
count the model's steps (a continued run goes on from where the model was), so the bar's figure
is always the status line's."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, QTimer, Slot

from playground.engine.events import perplexity
from playground.engine.wording import plural
from playground.ui.controllers.adaptation import method_tag, share_text

REFRESH_MS = 250  # the status line: 4 updates a second is plenty to read


def ppl_text(loss: Optional[float]) -> str:
    """Perplexity for the status line: a readable number, never dozens of digits (a run that
    blew up has a loss in the hundreds, and e^400 has 174 of them)."""
    ppl = perplexity(loss)
    if ppl is None:
        return "n/a"
    return f"{ppl:.2f}" if ppl < 1000 else f"{ppl:,.0f}" if ppl < 1e6 else "over a million"


def clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class StatusTracker(QObject):
    def __init__(self, control, panel, parent: Optional[QObject] = None):
        """Shows the TrainingController's runs on the training panel's line and bar."""
        super().__init__(parent)
        self.control, self.panel = control, panel
        self.first = self.last = 0
        self.step_ev = None
        self.val_loss: Optional[float] = None
        self.original_loss: Optional[float] = None  # a fine-tune's loss on its original text
        self.no_validation = ""   # why a run has no validation loss, when it has none
        self.averaged = False     # the run's evaluations score a moving average of the weights
        self.paused = False
        self._error = False       # the line shows an error (cleared when what caused it changes)
        self._dirty = False
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        control.started.connect(self.started)
        control.stepped.connect(self.step)
        control.evaluated.connect(self.evaluated)
        control.ended.connect(self.finished)

    def begin(self, continuing: bool = False) -> None:
        self.step_ev, self.paused = None, False
        if not continuing:  # a new model has no validation loss until its first evaluation
            self.val_loss = None
        self.message("Preparing the corpus and the model…")
        self.timer.start()

    @Slot(object)
    def started(self, ev) -> None:
        self.first, self.last = ev.first_step, ev.last_step
        self.averaged = ev.ema > 0  # its validation is the weight average's
        if ev.first_step == 0:
            self.val_loss = None
        self.original_loss = None
        # the model's own step count: "457 / 900" on the bar while the line says step 457/900
        self.panel.progress.setRange(ev.first_step, ev.last_step)
        self.panel.progress.setValue(ev.first_step)
        self.panel.progress.setFormat(f"%v / {ev.last_step:,} steps")  # (Qt's %m is max - min)
        unit = "characters" if ev.tokenizer == "char" else "tokens"
        self.no_validation = "" if ev.n_val else (
            f"no validation: the text is too short to hold out a validation window ({ev.n_train:,} {unit})")
        note = f" ({self.no_validation})" if self.no_validation else ""
        if ev.n_val and ev.message:  # (without validation the message says only that)
            note += f"; {ev.message}"
        board = getattr(self.control, "board_folder", None)
        if board:
            note += f"; TensorBoard files in {board}"
        adapt, share = getattr(self.control, "adaptation", None), getattr(self.control, "trainable", None)
        if adapt is not None and share is not None:
            self.message(f"Fine-tuning ({method_tag(adapt)}): {share_text(*share)}, on "
                         f"{plural(ev.n_train, unit[:-1])} with {plural(ev.threads, 'thread')}{note}")
            return
        self.message(f"Training {ev.params:,} parameters on {plural(ev.n_train, unit[:-1])} with "
                     f"{plural(ev.threads, 'thread')}{note}")

    @Slot(object)
    def step(self, ev) -> None:
        self.step_ev, self._dirty = ev, True

    @Slot(object)
    def evaluated(self, ev) -> None:
        self.val_loss, self._dirty = ev.val_loss, True
        self.original_loss = ev.base_val_loss

    def set_paused(self, paused: bool) -> None:
        self.paused, self._dirty = paused, True
        self.refresh()

    @Slot(object)
    def finished(self, done) -> None:
        self.refresh()
        self.timer.stop()
        if done is None:
            return
        self.panel.progress.setValue(done.last_step if done.last_step is not None else done.step)
        words = {"completed": "Finished", "stopped": "Stopped", "early-stopped": "Stopped early",
                 "diverged": "Diverged"}[done.status]
        loss = "n/a" if done.final_loss is None else f"{done.final_loss:.4f}"
        at = done.last_step if done.last_step is not None else done.step
        text = f"{words} at step {at:,} after {clock(done.train_seconds)}; loss {loss}"
        if done.final_val_loss is not None:
            text += f", validation {done.final_val_loss:.4f}"
        elif self.no_validation:
            text += " (no validation: the text is too short)"
        if done.status == "diverged":
            note = done.message[:1].upper() + done.message[1:]
        elif done.best_step is not None and done.step != at:
            # the first words say what the model in hand is: the rest is in the tooltip
            note = (f"Kept step {done.step:,}, where validation was lowest"
                    + (" (the weights it started from)" if done.step == self.first else ""))
        else:
            note = done.message[:1].upper() + done.message[1:]
        self.message(text + (f". {note}" if note else ""))

    def opened(self, step: int) -> None:
        """A model from a file: the bar shows how far it was trained."""
        self.timer.stop()
        self.step_ev, self.val_loss, self.first, self.last = None, None, step, step
        self.panel.progress.setRange(0, max(step, 1))
        self.panel.progress.setValue(step)
        self.panel.progress.setFormat(f"trained {step:,} steps")

    def message(self, text: str, error: bool = False) -> None:
        self._error = error
        self.panel.status.setText(text)

    def forget_error(self) -> None:
        if self._error:
            self.message("Ready: Train starts a new model with the settings shown")

    @Slot()
    def refresh(self) -> None:
        ev = self.step_ev
        if ev is None or not self._dirty:
            return
        self._dirty = False
        done = ev.step - self.first
        total = max(self.last - self.first, 1)
        self.panel.progress.setValue(ev.step)
        left = ev.elapsed_s / max(done, 1) * (total - done)
        if self.no_validation:
            val = "no validation (text too short)"
        else:
            val = "val " + ("n/a" if self.val_loss is None else f"{self.val_loss:.4f}")
            val += " (weight average)" if self.averaged else ""
        if self.original_loss is not None:
            val += f" · original {self.original_loss:.4f}"
        ppl = ppl_text(self.val_loss if self.val_loss is not None else ev.loss)
        state = "Paused · " if self.paused else ""
        self.message(f"{state}step {ev.step:,}/{self.last:,} · loss {ev.loss:.4f} · {val} · "
                     f"ppl {ppl} · {ev.tokens_per_s:,.0f} tok/s · elapsed {clock(ev.elapsed_s)} · "
                     f"left {clock(left)}")
