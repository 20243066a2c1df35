"""Where the model is surprised: the start of the validation text, each token tinted by the
model's loss on it (the tints of the Generate panel: confident ... a long shot), a hover showing
what it expected there, and the most surprising places listed; a click scrolls to one."""

from __future__ import annotations

import bisect
import math
from typing import Optional

from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QTextEdit, QToolTip, QVBoxLayout, QWidget

from playground.ui.views.odds_view import TINT_WORDS, shown, tint
from playground.ui.views.widgets import Message, named

MAX_CHARS = 3000   # of the validation text read: a few seconds of a small model's time at most
WORST = 10         # places listed


def visible(text: str) -> str:
    """Spaces and line breaks made visible, for a place listed on one line."""
    return "".join(shown(c) for c in text)


class TintedText(QTextEdit):
    """Read-only text whose tooltip is the hovered token's (tip_at(position) says it)."""

    def __init__(self):
        super().__init__()
        self.tip_at = lambda position: ""

    def event(self, event) -> bool:
        if event.type() == QEvent.ToolTip:
            position = self.cursorForPosition(self.viewport().mapFrom(self, event.pos())).position()
            tip = self.tip_at(position)
            if tip:
                QToolTip.showText(event.globalPos(), tip, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)


class SurpriseView(QWidget):
    readRequested = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.surprise = None          # the engine's Surprise shown
        self.starts: list[int] = []   # where each token's text starts in the text shown
        self.worst: list[int] = []    # token positions listed, most surprising first
        self.info = named(Message("Train a model or open one: the text is read at each evaluation", lines=1),
                          "surpriseInfo", "Surprise info", "Which text is read, and its loss")
        self.text = named(TintedText(), "surpriseText", "Text tinted by surprise",
                          f"The validation text (the first {MAX_CHARS:,} characters), each token tinted by "
                          f"the probability the model gave it ({TINT_WORDS}). Hover a token: what it "
                          "expected there")
        self.text.setReadOnly(True)
        self.text.setFont(QFont("monospace", 9))
        self.text.tip_at = self.tip_at
        self.list = named(QListWidget(), "surpriseList", "Most surprising places",
                          "The tokens the model found least likely, the worst first; click one to see it in "
                          "the text")
        self.list.setFont(QFont("monospace", 8))
        row = QHBoxLayout()
        row.addWidget(self.text, 3)
        row.addWidget(self.list, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.info)
        layout.addLayout(row, 1)
        self.list.currentRowChanged.connect(self.go_to)

    def show_problem(self, message: str) -> None:
        self.info.setText(f"Cannot read the text: {message}")

    def clear(self) -> None:
        """No model in hand: nothing to show."""
        self.surprise, self.starts, self.worst = None, [], []
        self.text.clear()
        self.list.clear()
        self.info.setText("Train a model or open one: the text is read at each evaluation")

    def set_surprise(self, found, pieces: tuple, step: int, source: str) -> None:
        self.surprise = found
        self.starts = [0]
        for piece in pieces[:-1]:
            self.starts.append(self.starts[-1] + len(piece))
        self.text.setPlainText("".join(pieces))
        self._tint(pieces)
        self.worst = found.worst(WORST)
        self.list.blockSignals(True)
        self.list.clear()
        for i in self.worst:
            item = QListWidgetItem(f"{found.losses[i]:4.1f} {self._context(i)}")
            item.setToolTip(self.tip_for(i))
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.info.setText(f"Step {step:,}: {source}, {len(found.tokens):,} tokens, mean loss {found.mean_loss:.3f}. "
                          "Tint: the probability it gave each token")

    def _tint(self, pieces: tuple) -> None:
        """Runs of tokens of one tint get one format: a few hundred edits, not thousands."""
        cursor = QTextCursor(self.text.document())
        cursor.beginEditBlock()
        runs: list[tuple[int, int, str]] = []
        for i, loss in enumerate(self.surprise.losses):
            colour = "#ffffff" if loss is None else tint(math.exp(-loss))
            start, end = self.starts[i], self.starts[i] + len(pieces[i])
            if runs and runs[-1][2] == colour and runs[-1][1] == start:
                runs[-1] = (runs[-1][0], end, colour)
            elif end > start:
                runs.append((start, end, colour))
        for start, end, colour in runs:
            fmt = QTextCharFormat()
            fmt.setBackground(QBrush(QColor(colour)))
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.KeepAnchor)
            cursor.setCharFormat(fmt)
        cursor.endEditBlock()

    def token_at(self, position: int) -> int:
        """The token whose text holds the character at `position` of the text shown."""
        return max(bisect.bisect_right(self.starts, position) - 1, 0)

    def tip_at(self, position: int) -> str:
        if self.surprise is None or position >= len(self.text.toPlainText()):
            return ""
        return self.tip_for(self.token_at(position))

    def tip_for(self, i: int) -> str:
        found = self.surprise
        if found.losses[i] is None:
            return f"'{shown(found.tokens[i])}': the first token, which nothing predicts"
        expected = ", ".join(f"'{shown(t)}' {p:.1%}" for t, p in found.candidates[i])
        return (f"'{shown(found.tokens[i])}': loss {found.losses[i]:.2f} (probability "
                f"{math.exp(-found.losses[i]):.1%})\nIt expected: {expected}")

    def _context(self, i: int) -> str:
        before = visible("".join(self.surprise.tokens[max(0, i - 12):i])[-12:])
        return f"{before}[{visible(self.surprise.tokens[i])}]"

    @Slot(int)
    def go_to(self, row: int) -> None:
        """Select the listed place's token in the text and scroll to it."""
        if not 0 <= row < len(self.worst):
            return
        i = self.worst[row]
        cursor = self.text.textCursor()
        cursor.setPosition(self.starts[i])
        end = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.text.toPlainText())
        cursor.setPosition(end, QTextCursor.KeepAnchor)
        self.text.setTextCursor(cursor)
        self.text.ensureCursorVisible()
        self.text.setFocus(Qt.OtherFocusReason)
