"""Held-out task accuracy during training, beside the loss: the share of the corpus's held-out
problems (sums it never saw, say) the model answers at each evaluation, 0-100%. Shown only
for a corpus that brings such tasks."""

from __future__ import annotations

from typing import Optional

import pyqtgraph as pg
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QVBoxLayout, QWidget

from playground.ui.controllers.loss_history import Series
from playground.ui.views.widgets import named


class TaskPlot(QWidget):
    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the TrainingController whose evaluations this shows."""
        super().__init__(parent)
        self.points = Series()
        self.plot = named(pg.PlotWidget(background="w"), "taskPlot", "Held-out task accuracy",
                          "The share of held-out problems the model answers right at each evaluation: "
                          "problems whose answers never appear in its training text")
        self.plot.setMinimumHeight(90)
        self.plot.setMaximumHeight(150)
        item = self.plot.getPlotItem()
        item.setLabel("left", "tasks right (%)")
        item.setYRange(0, 100, padding=0.05)
        item.setMouseEnabled(x=True, y=False)
        self.curve = item.plot(pen=pg.mkPen((44, 160, 44), width=2), symbol="o", symbolSize=6,
                               symbolBrush=(44, 160, 44), symbolPen=None)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.hide()
        control.started.connect(self._started)
        control.evaluated.connect(self._evaluated)

    @Slot(object)
    def _started(self, ev) -> None:
        x, _ = self.points.view()
        keep = int((x <= ev.first_step).sum()) if ev.first_step else 0  # continuing keeps earlier points
        self.points.n = keep
        self._draw()

    @Slot(object)
    def _evaluated(self, ev) -> None:
        if ev.task_accuracy is None:
            return
        self.points.append(ev.step, 100 * ev.task_accuracy)
        self._draw()

    def _draw(self) -> None:
        self.curve.setData(*self.points.view())
        self.setVisible(self.points.n > 0)
