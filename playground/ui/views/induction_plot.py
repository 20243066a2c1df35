"""Induction heads over training: each head's induction score at every evaluation read (left),
and the loss on a random probe's first half against its repeat (right): when a head learns to
copy what followed a token last time, its score jumps and the repeat's loss falls away."""

from __future__ import annotations

from typing import Optional

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from playground.ui.views.widgets import Message, named

HEAD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


class InductionPlot(QWidget):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.steps: list[int] = []
        self.scores: list[list[float]] = []          # per reading: every head, layer by layer
        self.halves: list[tuple[float, float]] = []  # per reading: (first half, repeat) loss
        self.info = named(Message("Shown during training: a score is read at each evaluation", lines=1),
                          "inductionInfo", "Induction info", "The strongest head now, and the two losses")
        self.score_plot = named(pg.PlotWidget(background="w"), "inductionScorePlot", "Induction score per head",
                                "Each head's induction score: on a random sequence repeated twice, the "
                                "attention a token pays to the token after its own earlier occurrence (1: it "
                                "copies perfectly, about 1/position: it does not)")
        self.score_plot.setLabel("left", "score")
        self.score_plot.setLabel("bottom", "step")
        self.score_plot.setYRange(0, 1)
        self.loss_plot = named(pg.PlotWidget(background="w"), "inductionLossPlot", "Loss on the probe's halves",
                               "The loss on the probe's random first half (nothing to learn there) and on its "
                               "repeat (a model that copies gets it nearly free)")
        self.loss_plot.setLabel("left", "loss")
        # named in the axis label, not a legend: a legend covers the curves of a plot this small
        self.loss_plot.setLabel("bottom", "step: <span style='color:#888'>random half</span>, "
                                "<span style='color:#d62728'>its repeat</span>")
        self.first = self.loss_plot.plot(pen=pg.mkPen("#888", width=2))
        self.repeat = self.loss_plot.plot(pen=pg.mkPen("#d62728", width=2))
        self.curves: list[pg.PlotDataItem] = []
        for plot in (self.score_plot, self.loss_plot):
            plot.getPlotItem().hideButtons()
        row = QHBoxLayout()
        row.addWidget(self.score_plot, 1)
        row.addWidget(self.loss_plot, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.info)
        layout.addLayout(row, 1)

    def show_problem(self, message: str) -> None:
        self.info.setText(f"No induction score: {message}")

    def forget(self) -> None:
        """A new model: its curves start afresh."""
        self.steps, self.scores, self.halves = [], [], []
        for curve in self.curves:
            self.score_plot.removeItem(curve)
        self.curves = []
        self.first.setData([], [])
        self.repeat.setData([], [])

    def clear(self) -> None:
        """No model in hand: nothing to show."""
        self.forget()
        self.info.setText("Train or open a model")

    def add(self, found, step: int) -> None:
        flat = [s for row in found.scores for s in row]
        if self.steps and step <= self.steps[-1]:   # read again at the same weights: replace it
            self.steps.pop(), self.scores.pop(), self.halves.pop()
        if self.scores and len(self.scores[-1]) != len(flat):
            self.forget()
        self.steps.append(step)
        self.scores.append(flat)
        self.halves.append((found.loss_first_half, found.loss_second_half))
        while len(self.curves) < len(flat):
            n = len(self.curves)
            pen = pg.mkPen(HEAD_COLOURS[n % len(HEAD_COLOURS)], width=1.5)
            self.curves.append(self.score_plot.plot(pen=pen, symbol="o", symbolSize=4, symbolPen=pen))
        for n, curve in enumerate(self.curves):
            curve.setData(self.steps, [scores[n] for scores in self.scores])
        self.first.setData(self.steps, [h[0] for h in self.halves])
        self.repeat.setData(self.steps, [h[1] for h in self.halves])
        layer, head, best = found.best()
        self.info.setText(f"Step {step:,}: best head {head + 1} of layer {layer + 1}, score {best:.2f}; loss "
                          f"{found.loss_first_half:.2f} on the random half, {found.loss_second_half:.2f} on its repeat")
        for plot in (self.score_plot, self.loss_plot):
            plot.setXRange(0, max(step, 1))
