"""Samples taken at each evaluation, newest last, so gibberish visibly turns into words."""

from __future__ import annotations

from typing import Optional

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from playground.ui.widgets import named


class SamplesPanel(QWidget):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.view = named(QListWidget(), "samplesView", "Samples during training",
                          "A short text generated at each evaluation, same seed every time")
        self.view.setWordWrap(True)
        self.view.setFont(QFont("monospace"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)

    def add(self, step: int, text: str) -> None:
        shown = text.replace("\n", " ⏎ ")
        item = QListWidgetItem(f"step {step:>6,}: {shown}")
        item.setToolTip(text)
        self.view.addItem(item)
        self.view.scrollToBottom()

    def clear(self) -> None:
        self.view.clear()

    def count(self) -> int:
        return self.view.count()
