"""Samples taken at each evaluation (same prompt and seed every time, so the change is the
model's), as a list and as a timeline to scrub: gibberish visibly turns into words."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSlider, QVBoxLayout, QWidget

from playground.ui.views.widgets import Message, named


def flat(text: str) -> str:
    """A prompt or answer on one line: newlines shown as ⏎."""
    return text.replace("\n", "⏎")


class SamplesPanel(QWidget):
    stepSelected = Signal(int)   # the evaluation step picked on the timeline

    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the TrainingController whose samples this shows."""
        super().__init__(parent)
        self.samples: list[tuple[int, str]] = []
        self.view = named(QListWidget(), "samplesView", "Samples during training",
                          "A short text generated at each evaluation, same seed every time")
        self.view.setWordWrap(True)
        self.view.setFont(QFont("monospace"))
        self.slider = named(QSlider(Qt.Horizontal), "timelineSlider", "Sample timeline",
                            "Scrub through the samples of each evaluation; the loss plot marks the step")
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        # three lines, always, wrapped anywhere: a long sample (one "word" of gibberish, early
        # on) neither widens the window nor pushes the list about; the list holds all of it
        self.current = named(Message("Samples appear at each evaluation", lines=3, reserve=True),
                             "timelineText", "Sample at the selected evaluation", "The sample the timeline points at")
        self.current.setFont(QFont("monospace"))
        row = QHBoxLayout()
        row.addWidget(QLabel("Timeline"))
        row.addWidget(self.slider, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.current)
        layout.addWidget(self.view, 1)
        self.slider.valueChanged.connect(self._scrubbed)
        self.view.currentRowChanged.connect(self.slider.setValue)
        control.started.connect(self._started)
        control.sampled.connect(self._sampled)

    @Slot(object)
    def _started(self, ev) -> None:
        if ev.first_step == 0:  # a fresh model: its samples start over
            self.clear()

    @Slot(object)
    def _sampled(self, ev) -> None:
        self.add(ev.step, ev.text, ev.answers)

    def add(self, step: int, text: str, answers: tuple = ()) -> None:
        """A sample, and the model's answers to a few held-out problems (prompt, expected, got)."""
        at_end = self.slider.value() == len(self.samples) - 1 or not self.samples
        shown = text.replace("\n", " ⏎ ")
        for prompt, expected, got in answers:
            verdict = "right" if got.startswith(expected) else f"wrong, {flat(expected)} expected"
            shown += f"\n    held-out: {flat(prompt)} → {flat(got)}  ({verdict})"
        text = shown.strip()
        self.samples.append((step, text))
        item = QListWidgetItem(f"step {step:>6,}: {text}")
        item.setToolTip(text)
        self.view.addItem(item)
        self.slider.setEnabled(True)
        self.slider.setRange(0, len(self.samples) - 1)
        if at_end:  # follow the newest unless the user is looking at an older one
            self.slider.setValue(len(self.samples) - 1)
            self._scrubbed(len(self.samples) - 1)
            self.view.scrollToBottom()

    @Slot(int)
    def _scrubbed(self, index: int) -> None:
        if 0 <= index < len(self.samples):
            step, text = self.samples[index]
            self.current.setText(f"step {step:,}: {text}")
            self.stepSelected.emit(step)

    def clear(self) -> None:
        self.samples.clear()
        self.view.clear()
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.current.setText("Samples appear at each evaluation")

    def count(self) -> int:
        return self.view.count()
