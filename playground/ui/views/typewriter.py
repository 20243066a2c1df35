"""Writes generated tokens into the output box at a pace a person can follow, each tinted by the
probability it was drawn with. Tokens arrive from the generation worker as fast as the model
makes them; they wait here and are written on a timer, a few per tick or one per tick. A token
is a character for a character model, a piece of a word (or of a character) for a BPE model."""

from __future__ import annotations

import bisect
from typing import Optional

from PySide6.QtCore import QElapsedTimer, QObject, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from playground.ui.views.odds_view import tint

TICK_MS = 40          # at most 25 repaints a second, however fast the model writes
READABLE_PACE = 25    # characters per second: the default, readable as it appears


class Typewriter(QObject):
    shown = Signal(int, object)   # (position in the output, token) of the last token written
    drained = Signal()            # the source has ended and every token is written

    def __init__(self, output: QPlainTextEdit, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.output = output
        self.pace = READABLE_PACE    # characters per second (a BPE token holds several); 0: no waiting
        self.tokens: list[tuple] = []  # (text, probability, candidates, label) of each written token
        self.starts: list[int] = []    # where each written token's text begins in the output
        self.pending: list[tuple] = []
        self.prompt_length = 0
        self.flushes = 0
        self._ended = False
        self._budget = 0.0           # tokens the pace allows but not yet written
        self._end = 0                # the output's length
        self._clock = QElapsedTimer()
        self.timer = QTimer(self, interval=TICK_MS)
        self.timer.timeout.connect(self.flush)

    def begin(self, shown_prompt: str) -> None:
        self.pending.clear()
        self.tokens.clear()
        self.starts.clear()
        self.prompt_length = self._end = len(shown_prompt)
        self._ended, self._budget = False, 0.0
        self.output.blockSignals(True)
        self.output.setPlainText(shown_prompt)
        self.output.blockSignals(False)
        self._clock.start()
        self.timer.start()

    @Slot(object)
    def push(self, token: tuple) -> None:
        """token = (text, probability, candidates, label), as the generation controller emits it."""
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
            # the pace is in characters, whatever a token holds; a late tick writes at most two
            # ticks' worth: the pace holds, never a burst. A token is never split: one that is
            # longer than what the budget allows waits until the budget covers it.
            burst = max(1.0, 2 * self.pace * TICK_MS / 1000)
            self._budget = min(self._budget + self.pace * self._clock.restart() / 1000,
                               max(burst, float(len(self.pending[0][0]))))
            count = 0
            for token in self.pending:
                if len(token[0]) > self._budget:
                    break
                self._budget -= len(token[0])
                count += 1
        else:
            self._clock.restart()
        if count:
            self.write(self.pending[:count])
            del self.pending[:count]
        if self._ended and not self.pending and self.timer.isActive():
            self.timer.stop()
            self.drained.emit()

    def write(self, tokens: list[tuple]) -> None:
        """Append these tokens at once, runs of one tint in one insert."""
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
        for token in tokens:
            self.starts.append(self._end)
            self._end += len(token[0])
        self.tokens.extend(tokens)
        self.flushes += 1
        self.shown.emit(self.starts[-1], self.tokens[-1])

    def index_at(self, position: int) -> int:
        """The written token whose text covers this position of the output (the one that
        finished a character split across tokens), or -1 (the prompt, or past the end)."""
        if not self.tokens or not self.prompt_length <= position < self._end:
            return -1
        return bisect.bisect_right(self.starts, position) - 1
