"""The embedding map: every token's vector projected to 2-D (PCA), vowels, other letters, digits,
spaces and punctuation coloured apart, redrawn at each evaluation with each axis's sign kept from
the frame before; beside it the learned position vectors as a curve, or why there are none."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from playground.ui.views.odds_view import shown
from playground.ui.views.widgets import Message, named

KIND_COLOURS = {"vowel": "#d62728", "letter": "#1f77b4", "digit": "#2ca02c", "space": "#7f7f7f",
                "punctuation": "#ff7f0e", "other": "#9467bd"}
FRAMES, FRAME_MS = 8, 40   # a new frame glides in from the last over a third of a second
MOST_LABELS = 160   # a BPE vocabulary of hundreds: labels past this many hide the map (hover names each)


def legend_html() -> str:
    return " ".join(f"<span style='color:{colour}'>●</span>{kind}" for kind, colour in KIND_COLOURS.items())


class EmbeddingView(QWidget):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.map = None   # the engine's EmbeddingMap shown (the next frame keeps its signs)
        self.info = named(Message("", lines=1),
                          "embeddingInfo", "Embedding map info", "Which step, and how much of the spread the "
                          "two axes show")
        legend = named(QLabel(legend_html()), "embeddingLegend", "Colours", "What each colour of point is")
        self.tokens_plot = named(pg.PlotWidget(background="w"), "embeddingPlot", "Token embedding map",
                                 "Each token's vector, projected onto the two directions along which the vectors "
                                 "differ most (PCA). Tokens the model treats alike sit close together. Hover a "
                                 "point for its token")
        self.scatter = pg.ScatterPlotItem(size=7, hoverable=True, tip=lambda x, y, data: f"'{data}'",
                                          pen=pg.mkPen(None))
        self.tokens_plot.addItem(self.scatter)
        self.tokens_plot.getViewBox().setDefaultPadding(0.08)   # room for the labels of the outermost points
        self.labels: list[pg.TextItem] = []
        self.points = np.zeros((0, 2))   # where the points are drawn now
        self._glide = (self.points, self.points, 0)   # (from, to, frames left)
        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self._step)
        self.positions_plot = named(pg.PlotWidget(background="w"), "positionPlot", "Position embeddings",
                                    "The learned position vectors, in order (first position dark, last light): "
                                    "neighbouring positions that sit close were learned to be alike")
        self.positions_plot.setTitle("positions", size="8pt")
        self.curve = pg.PlotDataItem(pen=pg.mkPen("#888", width=1), symbol="o", symbolSize=5)
        self.positions_plot.addItem(self.curve)
        self.no_positions = named(Message("", lines=6), "noPositions", "No position table",
                                  "Why this model has no position vectors to draw")
        for plot in (self.tokens_plot, self.positions_plot):
            plot.getPlotItem().hideButtons()
            for side in ("left", "bottom"):
                plot.getPlotItem().getAxis(side).setStyle(tickLength=3)
                plot.getPlotItem().getAxis(side).enableAutoSIPrefix(False)   # no "(x0.001)" on a unitless axis
        self.tokens_plot.setLabel("bottom", "PC 1")
        self.tokens_plot.setLabel("left", "PC 2")
        side = QVBoxLayout()
        side.addWidget(self.positions_plot, 1)
        side.addWidget(self.no_positions, 1)
        self.no_positions.hide()
        row = QHBoxLayout()
        row.addWidget(self.tokens_plot, 2)
        row.addLayout(side, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()   # one line above the map: the colours, then the step
        top.addWidget(legend)
        top.addWidget(self.info, 1)
        layout.addLayout(top)
        layout.addLayout(row, 1)

    def show_problem(self, message: str) -> None:
        self.info.setText(f"No map: {message}")

    def forget(self) -> None:
        """A new model: its first frame takes no signs from another model's map."""
        self.map = None
        self.points = np.zeros((0, 2))

    def clear(self) -> None:
        """No model in hand: nothing to show."""
        self.forget()
        self.timer.stop()
        self.scatter.clear()
        self._label(np.zeros((0, 2)), None)
        self.curve.setData([], [])
        self.info.setText("Train or open a model")

    def set_map(self, found, step: int) -> None:
        self.map = found
        points = np.asarray(found.tokens.points, dtype=float).reshape(-1, 2)
        brushes = [pg.mkBrush(KIND_COLOURS.get(kind, KIND_COLOURS["other"])) for kind in found.kinds]
        start = self.points if self.points.shape == points.shape else points
        self._style = {"brush": brushes, "data": [shown(t) for t in found.labels]}
        self.scatter.setData(pos=start, **self._style)
        self._label(start, found.labels)
        self._glide = (start, points, FRAMES)
        self.timer.start()
        share = sum(found.tokens.explained)
        self.info.setText(f"step {step:,}")
        self.tokens_plot.setLabel("bottom", f"PC 1 (both axes: {share:.0%} of the spread)")
        if found.positions is None:
            self.positions_plot.hide()
            self.no_positions.setText(f"No position vectors: {found.no_positions}.")
            self.no_positions.show()
            return
        self.no_positions.hide()
        self.positions_plot.show()
        where = np.asarray(found.positions.points, dtype=float).reshape(-1, 2)
        shade = np.linspace(30, 210, len(where))   # first position dark, last light
        self.curve.setData(where[:, 0], where[:, 1],
                           symbolBrush=[pg.mkBrush(int(s), int(s), 255) for s in shade])

    @Slot()
    def _step(self) -> None:
        """One frame of the glide from the last map to the new one."""
        start, end, left = self._glide
        left -= 1
        self._glide = (start, end, left)
        self.points = end + (start - end) * (left / FRAMES)
        self.scatter.setData(pos=self.points, **self._style)
        self._label(self.points, None)
        if left <= 0:
            self.timer.stop()

    def _label(self, points: np.ndarray, labels: Optional[list[str]]) -> None:
        """Labels beside the points (moved, not remade, from frame to frame; labels None: moved only)."""
        count = len(points) if labels is None else len(labels)
        wanted = count if count <= MOST_LABELS else 0
        while len(self.labels) > wanted:
            self.tokens_plot.removeItem(self.labels.pop())
        while len(self.labels) < wanted:
            label = pg.TextItem(color="#333", anchor=(0, 1))
            self.tokens_plot.addItem(label)
            self.labels.append(label)
        for i, (label, (x, y)) in enumerate(zip(self.labels, points)):
            if labels is not None:
                label.setText(shown(labels[i]))
            label.setPos(float(x), float(y))

    def point_count(self) -> int:
        return len(self.scatter.data)
