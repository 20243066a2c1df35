"""Temperature sweep: the same prompt and seed at several temperatures, one row each with its
temperature beside its text. Rows sit side by side in columns where the panel is wide enough
for readable ones, one under another where it is not; every box shows whole lines of text."""

from __future__ import annotations

import math
from typing import Optional

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFont, QPalette, QTextCursor
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from playground.ui.views.widgets import named

TEMPERATURES = (0.0, 0.5, 0.8, 1.0, 1.5)
COLUMN_PX = 260   # about 30 characters of monospace text: narrower columns are not readable
MIN_LINES = 2     # below this a box says too little; the panel scrolls instead


class LinesBox(QPlainTextEdit):
    """A text box padded outside its viewport, not inside the document: the document's own margin
    is empty only above the first line and below the last, so a scrolled box would show a sliver
    of the next line in it."""

    PAD = 4

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.document().setDocumentMargin(0)
        self.setViewportMargins(self.PAD, self.PAD, self.PAD, self.PAD)
        self.setBackgroundRole(QPalette.Base)  # the padding in the text's colour
        self.setAutoFillBackground(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # lines wrap: it would only take a line's room


class SweepView(QWidget):
    runRequested = Signal()   # the Sweep button here: the same as Generate's

    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the GenerationController whose sweeps this shows."""
        super().__init__(parent)
        self.run = named(QPushButton("Sweep"), "sweepHereButton", "Run the sweep",
                         "Write Generate's prompt with its seed at each of these temperatures")
        self.run.clicked.connect(self.runRequested)
        self.boxes: list[QPlainTextEdit] = []
        self.labels: list[QLabel] = []
        font = QFont("monospace")
        font.setStyleHint(QFont.Monospace)
        inner = QWidget()
        self.grid = QGridLayout(inner)
        self.grid.setContentsMargins(0, 0, 0, 0)
        for i, t in enumerate(TEMPERATURES):
            # two short lines keep the label narrow, leaving the row's width to the text
            label = QLabel("T = 0\ngreedy" if t == 0 else f"T = {t:g}")
            label.setAlignment(Qt.AlignRight | Qt.AlignTop)
            box = named(LinesBox(), f"sweepOutput{i}", f"Output at temperature {t:g}",
                        "The same prompt and seed: only the temperature differs")
            box.setReadOnly(True)
            box.setFont(font)
            box.setPlaceholderText("Sweep writes Generate's prompt here at this temperature")
            self.labels.append(label)
            self.boxes.append(box)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.run)
        top.addStretch(1)
        layout.addLayout(top)
        layout.addWidget(self.scroll)
        self.columns = 0
        self.lines = 0
        self._arrange()
        control.sweepStarted.connect(self.begin)
        control.sweepToken.connect(self._token)

    def _arrange(self) -> None:
        """Columns of (label, text) pairs as the width allows; each box as many whole lines as
        the height shares out (at least MIN_LINES), so no line is cut in half at its edge."""
        label_px = max(label.sizeHint().width() for label in self.labels) + self.grid.horizontalSpacing()
        columns = max(1, min(len(self.boxes), self.width() // (label_px + COLUMN_PX)))
        if columns != self.columns:
            self.columns = columns
            for i, (label, box) in enumerate(zip(self.labels, self.boxes)):
                row, column = divmod(i, columns)
                self.grid.addWidget(label, row, 2 * column)
                self.grid.addWidget(box, row, 2 * column + 1)
            for column in range(2 * len(self.boxes)):  # the text columns share the width
                self.grid.setColumnStretch(column, column % 2 if column < 2 * columns else 0)
            self.grid.setRowStretch(len(self.boxes), 1)  # spare height below the last row
        rows = math.ceil(len(self.boxes) / columns)
        spacing = self.grid.verticalSpacing()
        available = self.height() - 2 * self.scroll.frameWidth() - spacing * rows
        lines = max(MIN_LINES, (available // rows - self.chrome()) // self.line_px())
        if lines != self.lines:
            self.lines = lines
            for box in self.boxes:
                box.setFixedHeight(lines * self.line_px() + self.chrome())

    def line_px(self) -> int:
        return self.boxes[0].fontMetrics().lineSpacing()

    def chrome(self) -> int:
        """A box's height besides its lines: its frame and padding, above and below."""
        box = self.boxes[0]
        margins = box.viewportMargins()
        return 2 * box.frameWidth() + margins.top() + margins.bottom()

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
