"""Small helpers shared by the panels."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from PySide6.QtWidgets import QFileDialog, QWidget

W = TypeVar("W", bound=QWidget)


def named(widget: W, object_name: str, accessible_name: str, tooltip: str) -> W:
    """Give a widget the object name tests use, an accessible name and a plain-words tooltip."""
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible_name)
    widget.setToolTip(tooltip)
    return widget


class Series:
    """A growable pair of float64 arrays."""

    def __init__(self, capacity: int = 1024):
        self.x = np.empty(capacity)
        self.y = np.empty(capacity)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1

    def clear(self) -> None:
        self.n = 0

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]


def ask_path(parent: QWidget, title: str, name: str, kinds: str, then) -> None:
    """Ask where to save, then call then(path) unless the user cancelled."""
    path, _ = QFileDialog.getSaveFileName(parent, title, name, kinds)
    if path:
        then(path)
