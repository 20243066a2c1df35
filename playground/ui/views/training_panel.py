"""Training controls and status: Train (a new model), Continue (the model in hand, for the steps
set), Fine-tune… (adapt the model in hand to the corpus shown), Pause/Resume, Stop, Reset, a progress bar in the model's steps and a status line with step,
loss, validation loss, perplexity, tokens per second, elapsed and time left."""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget

from playground.ui.views.widgets import Message, compact, named

TRAIN_TIP = "Train a new model from fresh random weights with these settings ({keys})"
CONTINUE_TIP = ("Go on training the model in hand for {steps:,} more steps, with the training settings "
                "shown (learning rate, batch…) ({keys})")


class TrainingPanel(QWidget):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.keys = {"train": "Ctrl+Enter or F5", "continue": "Ctrl+Shift+Enter", "stop": "Esc"}
        self.train = named(QPushButton("Train"), "trainButton", "Train new model",
                           TRAIN_TIP.format(keys=self.keys["train"]))
        self.resume_training = named(QPushButton("Continue"), "continueButton", "Continue training",
                                     CONTINUE_TIP.format(steps=0, keys=self.keys["continue"]))
        self.finetune = named(QPushButton("Fine-tune…"), "finetuneButton", "Fine-tune",
                              "Adapt the model in hand to the corpus shown, fully or with LoRA, and watch "
                              "what it forgets of its original text (Run > Fine-tune…)")
        self.pause = named(QPushButton("Pause"), "pauseButton", "Pause or resume",
                           "Pause training between steps; press again to resume")
        self.stop = named(QPushButton("Stop"), "stopButton", "Stop",
                          f"Stop training after the current step; the model keeps what it learned ({self.keys['stop']})")
        self.reset = named(QPushButton("Reset"), "resetButton", "Reset",
                           "Put the model in hand away (asking first if it is not saved): "
                           "the next Train starts from fresh random weights")
        self.progress = named(QProgressBar(), "trainProgress", "Training progress",
                              "The model's steps: where this run is, out of where it ends")
        self.progress.setFormat("%v / %m steps")
        # two lines, always: a status that grows never pushes the plot down mid-run
        self.status = named(Message("Ready: pick a corpus and settings, then Train", lines=2, reserve=True),
                            "statusLine", "Training status", "Step, losses, perplexity, speed and time")
        buttons = QHBoxLayout()
        self.resume_training.setText("Continue +100,000")  # its widest label, for its minimum width
        compact([self.train, self.resume_training, self.finetune, self.pause, self.stop, self.reset])
        self.pause.setText("Resume")
        compact([self.pause])
        for b in (self.train, self.resume_training, self.pause, self.stop, self.reset):
            b.setAutoDefault(False)  # no button looks pressed-by-Enter: the shortcuts are explicit
            buttons.addWidget(b)
        self.finetune.setAutoDefault(False)
        # beside the progress bar: a sixth button in the row above made the middle too wide
        # for a 1280x720 screen (the settings form beside it was cut)
        bar = QHBoxLayout()
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.finetune)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        self._why_not_train = ""
        self._why_not_continue = "there is no model to continue yet"
        self._steps = 0
        self.set_running(False)

    def set_running(self, running: bool, paused: bool = False) -> None:
        self.running = running
        self.pause.setEnabled(running)
        self.stop.setEnabled(running)
        self.pause.setText("Resume" if paused else "Pause")
        self._update()

    def allow_train(self, allowed: bool, why: str = "") -> None:
        self._why_not_train = "" if allowed else why or "the settings have a problem"
        self._update()

    def allow_continue(self, why_not: str, steps: int) -> None:
        """Continue is possible when why_not is ''; its label says the steps it adds."""
        self._why_not_continue, self._steps = why_not, steps
        self._update()

    def _update(self) -> None:
        running = getattr(self, "running", False)
        self.train.setEnabled(not running and not self._why_not_train)
        self.train.setToolTip(TRAIN_TIP.format(keys=self.keys["train"]) if not self._why_not_train
                              else f"Cannot train yet: {self._why_not_train}")
        why = self._why_not_train or self._why_not_continue
        has_model = "no model to continue" not in self._why_not_continue
        self.resume_training.setText(f"Continue +{self._steps:,}" if self._steps and has_model else "Continue")
        self.resume_training.setEnabled(not running and not why)
        self.finetune.setEnabled(not running)
        self.resume_training.setToolTip(CONTINUE_TIP.format(steps=self._steps, keys=self.keys["continue"])
                                        if not why else f"Cannot continue: {why}")
