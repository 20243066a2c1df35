"""Temperature sweep: the same prompt and seed at several temperatures, side by side."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Slot
from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import QGridLayout, QLabel, QPlainTextEdit, QWidget

from playground.ui.widgets import named

TEMPERATURES = (0.0, 0.5, 0.8, 1.0, 1.5)


class SweepView(QWidget):
    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the GenerationController whose sweeps this shows."""
        super().__init__(parent)
        self.boxes: list[QPlainTextEdit] = []
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for i, t in enumerate(TEMPERATURES):
            label = QLabel("T = 0 (greedy)" if t == 0 else f"T = {t:g}")
            box = named(QPlainTextEdit(), f"sweepOutput{i}", f"Output at temperature {t:g}",
                        "The same prompt and seed: only the temperature differs")
            box.setReadOnly(True)
            box.setFont(QFont("monospace"))
            grid.addWidget(label, 0, i)
            grid.addWidget(box, 1, i)
            self.boxes.append(box)
        control.sweepStarted.connect(self.begin)
        control.sweepToken.connect(self._token)

    @Slot(str)
    def begin(self, prompt: str) -> None:
        for box in self.boxes:
            box.setPlainText(prompt)

    @Slot(object)
    def _token(self, item: tuple) -> None:
        self.add(*item)

    def add(self, index: int, text: str) -> None:
        cursor = self.boxes[index].textCursor()
        cursor.movePosition(QTextCursor.End)
        cursor.insertText(text)

    def texts(self) -> list[str]:
        return [b.toPlainText() for b in self.boxes]
