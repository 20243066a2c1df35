"""Training controls and status: Train, Pause/Resume, Stop, Reset, a progress bar and a line
with step, loss, validation loss, perplexity, tokens per second, elapsed and time left."""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from playground.ui.widgets import named


class TrainingPanel(QWidget):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.train = named(QPushButton("Train"), "trainButton", "Train",
                           "Start training (or continue training the current model) for the set steps")
        self.pause = named(QPushButton("Pause"), "pauseButton", "Pause or resume",
                           "Pause training between steps; press again to resume")
        self.stop = named(QPushButton("Stop"), "stopButton", "Stop",
                          "Stop training after the current step; the model keeps what it learned")
        self.reset = named(QPushButton("Reset"), "resetButton", "Reset",
                           "Throw the model away: the next Train starts from fresh random weights")
        self.progress = named(QProgressBar(), "trainProgress", "Training progress",
                              "Steps done out of the steps of this run")
        self.progress.setFormat("%v / %m steps")
        self.status = named(QLabel("Ready: pick a corpus and settings, then Train"), "statusLine",
                            "Training status", "Step, losses, perplexity, speed and time")
        self.status.setWordWrap(True)
        self.train.setDefault(True)
        buttons = QHBoxLayout()
        for b in (self.train, self.pause, self.stop, self.reset):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.set_running(False)

    def set_running(self, running: bool, paused: bool = False) -> None:
        self.train.setEnabled(not running and self.train.property("allowed") is not False)
        self.pause.setEnabled(running)
        self.stop.setEnabled(running)
        self.pause.setText("Resume" if paused else "Pause")

    def allow_train(self, allowed: bool, why: str = "") -> None:
        self.train.setProperty("allowed", allowed)
        running = self.stop.isEnabled()
        self.train.setEnabled(allowed and not running)
        self.train.setToolTip("Start training (or continue training the current model) for the set steps"
                              if allowed else f"Cannot train yet: {why}")
