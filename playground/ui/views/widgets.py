"""Small helpers shared by the panels."""

from __future__ import annotations

from typing import Optional, TypeVar

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QFontMetrics, QTextLayout, QTextOption
from PySide6.QtWidgets import QFileDialog, QLabel, QScrollArea, QSizePolicy, QWidget

W = TypeVar("W", bound=QWidget)


def named(widget: W, object_name: str, accessible_name: str, tooltip: str) -> W:
    """Give a widget the object name tests use, an accessible name and a plain-words tooltip."""
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible_name)
    widget.setToolTip(tooltip)
    return widget


def compact(widgets, width: int = 0, chars: int = 0) -> None:
    """Let fields shrink on a small screen: a spin box asks by default for the width of its
    largest value (a seed's ten digits), a combo box for its longest entry; summed over a panel
    that set the window's minimum width to nearly 1280 px. width: a spin box's minimum in
    pixels; chars: a combo box's in characters (the list still shows whole entries); a button
    gets the width of its text."""
    from PySide6.QtWidgets import QComboBox, QPushButton
    for widget in widgets:
        if isinstance(widget, QComboBox):  # its natural width stays what its entries need
            widget.setMinimumWidth(widget.fontMetrics().averageCharWidth() * chars + 36)
        elif isinstance(widget, QPushButton):  # the style's 80 px minimum is more than "Stop" needs
            widget.setMinimumWidth(widget.fontMetrics().horizontalAdvance(widget.text()) + 24)
        else:
            widget.setMinimumWidth(width)


class Message(QLabel):
    """A message that never widens the window: it wraps within the width the layout gives it
    (at spaces, or anywhere inside a long word or path), shows at most `lines` lines and ends the
    last with "…" when there is more; the whole text is then in its tooltip. With reserve, its
    height is always `lines` lines, so a message that grows never pushes the layout about.
    text() is the whole message. Plain text only."""

    def __init__(self, text: str = "", lines: int = 2, reserve: bool = False,
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._full, self._lines, self._reserve, self._tip, self._cut = "", max(lines, 1), reserve, "", False
        self.setTextFormat(Qt.PlainText)
        self.setWordWrap(False)  # the lines are broken here, to the width given
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed if reserve else QSizePolicy.Preferred)
        self.setText(text)

    def text(self) -> str:  # noqa: D102 (the whole message, not what fits)
        return self._full

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._full = text or ""
        self._relayout()

    def setToolTip(self, tip: str) -> None:  # noqa: N802
        self._tip = tip
        super().setToolTip(tip)

    def shown_lines(self) -> list[str]:
        """The lines on screen now (the last may end in '…')."""
        return super().text().split("\n") if super().text() else []

    def elided(self) -> bool:
        """Whether part of the message is left out (it is then in the tooltip)."""
        return self._cut

    def _relayout(self) -> None:
        rect = self.contentsRect()
        width = rect.width() if rect.width() > 20 else 10_000
        wanted, _ = wrap_lines(self._full, self.font(), width, self._lines)
        old_wanted, self._wanted = getattr(self, "_wanted", None), max(len(wanted), 1)
        # a layout that gave less height than asked for: as many lines as fit, the rest elided
        room = rect.height() // QFontMetrics(self.font()).lineSpacing() if self.isVisible() else self._lines
        lines, self._cut = wrap_lines(self._full, self.font(), width, max(1, min(self._lines, room)))
        super().setText("\n".join(lines))
        super().setToolTip(self._full if self._cut else self._tip)
        if self._wanted != old_wanted:
            self.updateGeometry()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size() != event.oldSize():
            self._relayout()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._relayout()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().changeEvent(event)
        if event.type() == QEvent.FontChange:  # its lines' height changed: so has its own, now
            self._relayout()
            self.updateGeometry()

    def sizeHint(self) -> QSize:
        fm = QFontMetrics(self.font())
        m = self.contentsMargins()
        count = self._lines if self._reserve else getattr(self, "_wanted", 1)
        return QSize(fm.averageCharWidth() * 20, count * fm.lineSpacing() + m.top() + m.bottom() + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(0, self.sizeHint().height())


def wrap_lines(text: str, font, width: int, max_lines: int) -> tuple[list[str], bool]:
    """The text broken into lines of at most `width` pixels (at spaces where it can, anywhere
    where it must), at most max_lines of them, the last ending in '…' when text was left out;
    and whether some was."""
    fm = QFontMetrics(font)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        layout = QTextLayout(paragraph, font)
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapAtWordBoundaryOrAnywhere)
        layout.setTextOption(option)
        layout.beginLayout()
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(width)
            lines.append(paragraph[line.textStart(): line.textStart() + line.textLength()].rstrip())
        layout.endLayout()
    if len(lines) <= max_lines:
        return lines, False
    rest = " ".join(lines[max_lines - 1:])
    return lines[: max_lines - 1] + [fm.elidedText(rest, Qt.ElideRight, width)], True


def scrolled(widget: QWidget, name: str = "", keep_width: bool = True) -> QScrollArea:
    """The widget in a box that scrolls up and down, never sideways; keep_width: the box is at
    least as wide as the widget needs (a form), else it wraps to the box (a paragraph)."""
    area = QScrollArea()
    area.setObjectName(name or f"{widget.objectName() or type(widget).__name__}Scroll")
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    if keep_width:
        area.setMinimumWidth(widget.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    return area


def ask_path(parent: QWidget, title: str, name: str, kinds: str, then) -> None:
    """Ask where to save, then call then(path) unless the user cancelled."""
    path, _ = QFileDialog.getSaveFileName(parent, title, name, kinds)
    if path:
        then(path)
