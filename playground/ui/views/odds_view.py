"""Next-token odds: a bar chart of the likeliest candidates (after temperature, top-k and top-p)
with the chosen one highlighted, and a list to branch from a different candidate. Candidates are
shown as the text they stand for; a BPE byte that is only part of a character shows as <0xE2>."""

from __future__ import annotations

import html
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from playground.ui.views.widgets import Message, named

# probability -> background tint of a generated token (confident ... long shot)
TINTS = [(0.9, "#c9f2c7", "90%+"), (0.5, "#eef5c2", "50-90%"),
         (0.2, "#fde3b8", "20-50%"), (0.0, "#f9c6c6", "under 20%")]
TINT_WORDS = "confident, likely, possible, a long shot"  # what the four tints mean, in the tooltip
LABEL_PX = 26  # a bar's label needs about this much room; a narrower chart labels fewer bars


MAX_BARS = 20


def tint(p: float) -> str:
    for floor, color, _ in TINTS:
        if p >= floor:
            return color
    return TINTS[-1][1]


def _short(label: str) -> str:
    return label if len(label) <= 4 else label[:3] + "…"


def shown(char: str) -> str:
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(char, char)


class OddsView(QWidget):
    branchRequested = Signal(int, str)   # position in the output, the candidate's text to put there
    refused = Signal(str)                # why a candidate cannot be branched from

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._position = -1
        self.plot = named(pg.PlotWidget(background="w"), "oddsPlot", "Next-token odds",
                          "The likeliest next tokens and their probabilities; orange is the one drawn")
        self.plot.setMinimumHeight(140)
        self.setMaximumHeight(260)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.getPlotItem().setLabel("left", "probability")
        self.plot.setYRange(0, 1)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.plot.addItem(self.bars)
        self.title = named(Message("Generate to see the odds of each token", lines=1), "oddsTitle",
                           "Odds title", "Which position the chart shows")
        self.candidates = named(QListWidget(), "candidateList", "Candidates",
                                "Double-click a candidate to put it here instead and continue from it")
        self.candidates.setMaximumWidth(170)
        legend = named(QLabel("drawn with: " + " ".join(
                           f"<span style='background:{color}'>&nbsp;{html.escape(words)}&nbsp;</span>"
                           for _, color, words in TINTS)),
                       "tintLegend", "Tint legend",
                       f"The background of each written token: the probability it was drawn with ({TINT_WORDS})")
        row = QHBoxLayout()
        row.addWidget(self.plot, 1)
        row.addWidget(self.candidates)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(row)
        layout.addWidget(legend)
        self.candidates.itemDoubleClicked.connect(self._branch)

    def show_token(self, position: int, token: tuple) -> None:
        """token = (its text, its probability, [(label, probability, text), ...], its label)."""
        _, p, candidates, chosen = token
        self._position = position
        bars = candidates[:MAX_BARS]  # the list below shows every candidate
        labels = [c[0] for c in bars]
        probs = np.array([c[1] for c in bars], dtype=float)
        brushes = [pg.mkBrush(230, 120, 20) if c == chosen else pg.mkBrush(70, 130, 190) for c in labels]
        self.bars.setOpts(x=np.arange(len(labels)), height=probs, width=0.7, brushes=brushes)
        # as many labels as fit (a BPE's labels are several characters), each cut to four
        every = max(1, -(-len(labels) * LABEL_PX // max(self.plot.width(), 1)))
        ticks = [(i, _short(shown(c))) for i, c in enumerate(labels) if i % every == 0]
        self.plot.getPlotItem().getAxis("bottom").setTicks([ticks])
        self.plot.setXRange(-0.6, max(len(labels), 1) - 0.4, padding=0)
        self.title.setText(f"Position {position}: drew {shown(chosen or '')!r} with probability {p:.1%}")
        self.candidates.clear()
        for label, q, text in candidates:
            item = QListWidgetItem(f"{shown(label)}  {q:.1%}")
            item.setData(256, label)      # Qt.UserRole
            item.setData(257, text)       # '' for a byte fragment
            self.candidates.addItem(item)

    def show_candidates(self, position: int, candidates: list[tuple]) -> None:
        """The odds before a draw: every candidate, none chosen yet."""
        self.show_token(position, ("", 0.0, candidates, None))
        self.title.setText(f"Position {position}: the odds of every candidate; drawing…")

    def shown_probabilities(self) -> list[tuple[str, float]]:
        """(label, height) of each bar."""
        heights = self.bars.opts["height"]
        return [(self.candidates.item(i).data(256), float(heights[i])) for i in range(len(heights))]

    @Slot(QListWidgetItem)
    def _branch(self, item: QListWidgetItem) -> None:
        if self._position < 0:
            return
        if not item.data(257):
            self.refused.emit(f"{item.data(256)} is a byte that is only part of a character: "
                              "branch from a candidate that is whole text")
            return
        self.branchRequested.emit(self._position, item.data(257))
