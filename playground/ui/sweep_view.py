"""Temperature sweep: the same prompt and seed at several temperatures, side by side where the
panel is wide enough for readable columns, one under another where it is not."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Slot
from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import QGridLayout, QLabel, QPlainTextEdit, QScrollArea, QVBoxLayout, QWidget

from playground.ui.widgets import named

TEMPERATURES = (0.0, 0.5, 0.8, 1.0, 1.5)
COLUMN_PX = 260  # about 30 characters of monospace text: narrower columns are not readable


class SweepView(QWidget):
    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the GenerationController whose sweeps this shows."""
        super().__init__(parent)
        self.boxes: list[QPlainTextEdit] = []
        self.labels: list[QLabel] = []
        inner = QWidget()
        self.grid = QGridLayout(inner)
        self.grid.setContentsMargins(0, 0, 0, 0)
        for i, t in enumerate(TEMPERATURES):
            label = QLabel("T = 0 (greedy)" if t == 0 else f"T = {t:g}")
            box = named(QPlainTextEdit(), f"sweepOutput{i}", f"Output at temperature {t:g}",
                        "The same prompt and seed: only the temperature differs")
            box.setReadOnly(True)
            box.setFont(QFont("monospace"))
            box.setMinimumHeight(80)
            self.labels.append(label)
            self.boxes.append(box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.columns = 0
        self._arrange()
        control.sweepStarted.connect(self.begin)
        control.sweepToken.connect(self._token)

    def _arrange(self) -> None:
        columns = max(1, min(len(self.boxes), self.width() // COLUMN_PX))
        if columns == self.columns:
            return
        self.columns = columns
        for i, (label, box) in enumerate(zip(self.labels, self.boxes)):
            row, column = divmod(i, columns)
            self.grid.addWidget(label, 2 * row, column)
            self.grid.addWidget(box, 2 * row + 1, column)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange()

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
