"""Small helpers shared by the panels."""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtWidgets import QWidget

W = TypeVar("W", bound=QWidget)


def named(widget: W, object_name: str, accessible_name: str, tooltip: str) -> W:
    """Give a widget the object name tests use, an accessible name and a plain-words tooltip."""
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible_name)
    widget.setToolTip(tooltip)
    return widget
