"""The logit lens: what each layer would predict if the model stopped there. A grid of layers
(rows, the embeddings first) x the prompt's tokens (columns); each cell the likeliest next token
and its probability, tinted by the probability that depth gives the token that does come next."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.ui.views.odds_view import shown, tint
from playground.ui.views.widgets import Message, compact, named

NO_NEXT = "#e8e8e8"   # the last column: nothing comes next in the prompt to score


class LensView(QWidget):
    readRequested = Signal()   # Read, or Enter in the prompt: the panel reads the lens now

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.lens = None   # the engine's Lens shown
        self.prompt = named(QLineEdit(), "lensPromptEdit", "Logit lens prompt",
                            "The text to look at (its last block of tokens); empty takes the Generate panel's "
                            "selected output, else its prompt, else what it wrote, else the start of the "
                            "validation text")
        self.prompt.setPlaceholderText("Prompt (empty: Generate's selection or prompt)")
        self.read = named(QPushButton("Read"), "lensReadButton", "Read the lens",
                          "Read the lens for this prompt with the latest weights (it also reads itself at "
                          "every evaluation while it is shown)")
        compact([self.read])
        self.info = named(Message("Train or open a model", lines=1),
                          "lensInfo", "Logit lens info", "Whose weights the grid shows, and how many tokens")
        self.grid = named(QTableWidget(), "lensGrid", "Logit lens grid",
                          "Row: where the model stops (after the embeddings, after each block); column: a token "
                          "of the prompt. Each cell: the token that depth would predict next, and how sure it "
                          "is. Tint: the probability it gives the token that really comes next (green: "
                          "confident, red: a long shot). Hover a cell for the detail")
        self.grid.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.grid.setSelectionMode(QAbstractItemView.NoSelection)
        self.grid.setFont(QFont("monospace", 8))
        self.grid.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        rows = self.grid.verticalHeader()   # one line a row: a short dock still shows three of them
        rows.setSectionResizeMode(QHeaderView.Fixed)
        rows.setDefaultSectionSize(self.grid.fontMetrics().height() + 4)
        bar = QHBoxLayout()
        bar.addWidget(self.prompt, 3)
        bar.addWidget(self.read)
        bar.addWidget(self.info, 2)   # beside the prompt: every line of the dock's height is a row
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.grid, 1)
        self.read.clicked.connect(self.readRequested)
        self.prompt.returnPressed.connect(self.readRequested)

    def show_problem(self, message: str) -> None:
        """Said here, not in a dialog: it may come at every evaluation of a run."""
        self.info.setText(f"No lens: {message}")

    def clear(self) -> None:
        """No model in hand: nothing to show."""
        self.lens = None
        self.grid.clear()
        self.grid.setRowCount(0)
        self.grid.setColumnCount(0)
        self.info.setText("Train or open a model")

    def set_lens(self, lens, step: int) -> None:
        self.lens = lens
        rows, columns = len(lens.layers), len(lens.tokens)
        self.grid.clear()
        self.grid.setRowCount(rows)
        self.grid.setColumnCount(columns)
        self.grid.setVerticalHeaderLabels(lens.layers)
        self.grid.setHorizontalHeaderLabels([shown(t) for t in lens.tokens])
        for r in range(rows):
            for c in range(columns):
                self.grid.setItem(r, c, self._cell(lens, r, c))
        cut = f" (the first {lens.dropped:,} cut: over the block)" if lens.dropped else ""
        self.info.setText(f"Step {step:,}, {columns} tokens{cut}")
        self.grid.scrollToItem(self.grid.item(rows - 1, columns - 1))

    def _cell(self, lens, r: int, c: int) -> QTableWidgetItem:
        top, p, p_next = lens.top[r][c], lens.top_prob[r][c], lens.next_prob[r][c]
        item = QTableWidgetItem(f"{shown(top)} {p:.0%}")   # one line: a short dock shows three rows
        item.setTextAlignment(Qt.AlignCenter)
        item.setBackground(QBrush(QColor(NO_NEXT if p_next is None else tint(p_next))))
        following = lens.tokens[c + 1] if c + 1 < len(lens.tokens) else None
        if following is not None and top == following:
            font = item.font()
            font.setBold(True)   # this depth already predicts the right token
            item.setFont(font)
        where = "the embeddings alone" if r == 0 else f"the model stopped after {lens.layers[r]}"
        tip = (f"After '{shown(lens.tokens[c])}' (token {c + 1}), {where} would predict '{shown(top)}' "
               f"with probability {p:.1%}.")
        if following is not None:
            tip += f"\nThe token that comes next, '{shown(following)}', gets {p_next:.1%} here."
        item.setToolTip(tip)
        return item

    def cell_text(self, r: int, c: int) -> str:
        item = self.grid.item(r, c)
        return item.text() if item is not None else ""
