"""Writes generated characters into the output box at a pace a person can follow, each tinted by
the probability it was drawn with. Characters arrive from the generation worker as fast as the
model makes them; they wait here and are written on a timer, a few per tick or one per tick."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QElapsedTimer, QObject, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from playground.ui.odds_view import tint

TICK_MS = 40          # at most 25 repaints a second, however fast the model writes
READABLE_PACE = 25    # characters per second: the default, readable as it appears


class Typewriter(QObject):
    shown = Signal(int, object)   # (position in the output, token) of the last character written
    drained = Signal()            # the source has ended and every character is written

    def __init__(self, output: QPlainTextEdit, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.output = output
        self.pace = READABLE_PACE    # characters per second; 0 writes them as fast as they come
        self.tokens: list[tuple] = []  # (char, probability, candidates) of each written character
        self.pending: list[tuple] = []
        self.prompt_length = 0
        self.flushes = 0
        self._ended = False
        self._budget = 0.0           # characters the pace allows but not yet written
        self._clock = QElapsedTimer()
        self.timer = QTimer(self, interval=TICK_MS)
        self.timer.timeout.connect(self.flush)

    def begin(self, shown_prompt: str) -> None:
        self.pending.clear()
        self.tokens.clear()
        self.prompt_length = len(shown_prompt)
        self._ended, self._budget = False, 0.0
        self.output.blockSignals(True)
        self.output.setPlainText(shown_prompt)
        self.output.blockSignals(False)
        self._clock.start()
        self.timer.start()

    @Slot(object)
    def push(self, token: tuple) -> None:
        """token = (char, probability, candidates), as the generation controller emits it."""
        self.pending.append(token)

    @Slot()
    def source_ended(self) -> None:
        self._ended = True
        self.flush()

    def stop(self) -> None:
        """Drop what is not written yet and end now."""
        self.pending.clear()
        self.source_ended()

    @Slot()
    def flush(self) -> None:
        count = len(self.pending)
        if self.pace > 0 and count:
            # a late tick writes at most two ticks' worth: the pace holds, never a burst
            burst = max(1.0, 2 * self.pace * TICK_MS / 1000)
            self._budget = min(self._budget + self.pace * self._clock.restart() / 1000, burst)
            count = min(count, int(self._budget))
            self._budget -= count
        else:
            self._clock.restart()
        if count:
            self.write(self.pending[:count])
            del self.pending[:count]
        if self._ended and not self.pending and self.timer.isActive():
            self.timer.stop()
            self.drained.emit()

    def write(self, tokens: list[tuple]) -> None:
        """Append these characters at once, runs of one tint in one insert."""
        self.output.blockSignals(True)
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.End)
        run, color = [], None
        for token in tokens + [None]:
            c = None if token is None else tint(token[1])
            if run and c != color:
                fmt = QTextCharFormat()
                fmt.setBackground(QColor(color))
                cursor.insertText("".join(run), fmt)
                run = []
            if token is not None:
                run.append(token[0])
                color = c
        self.output.setTextCursor(cursor)
        self.output.ensureCursorVisible()
        self.output.blockSignals(False)
        self.tokens.extend(tokens)
        self.flushes += 1
        self.shown.emit(self.prompt_length + len(self.tokens) - 1, self.tokens[-1])
