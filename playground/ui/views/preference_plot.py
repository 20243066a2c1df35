"""The curves of a preference run (DPO), from its evaluations: the loss and the reward margin on
the training pairs and the held-out ones, the preference accuracy on pairs it never trained on,
and the loss on the model's original text (what the preference costs). Redrawn from a timer."""

from __future__ import annotations

from typing import Optional

import pyqtgraph as pg
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QVBoxLayout, QWidget

from playground.ui.controllers.loss_history import Series
from playground.ui.views.widgets import named

TRAIN_PEN, HELD_PEN, ORIGINAL = (31, 119, 180), (255, 127, 14), (148, 103, 189)


class PreferencePlot(QWidget):
    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the PreferenceController whose runs this draws."""
        super().__init__(parent)
        self.view = named(pg.GraphicsLayoutWidget(), "preferencePlot", "Preference curves",
                          "Blue: the training pairs (a fixed sample); orange: the held-out pairs, never trained "
                          "on; purple: the loss on the model's original text, which rises when the "
                          "preference costs it what it knew")
        self.view.setBackground("w")
        self.view.setMinimumHeight(180)
        self.series: dict[str, Series] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        for row, column, name, title in ((0, 0, "loss", "DPO loss"), (0, 1, "margin", "reward margin"),
                                         (1, 0, "accuracy", "pairs preferred (%)"),
                                         (1, 1, "original", "original text's loss")):
            plot = self.plots[name] = self.view.addPlot(row=row, col=column, title=title)
            plot.titleLabel.setText(title, size="8pt")
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setStyle(tickFont=self.font(), tickTextOffset=2)
        self.plots["accuracy"].setYRange(0, 100, padding=0.05)
        for key, plot, color, symbol in (("loss", "loss", TRAIN_PEN, "o"), ("held_loss", "loss", HELD_PEN, "t"),
                                         ("margin", "margin", TRAIN_PEN, "o"),
                                         ("held_margin", "margin", HELD_PEN, "t"),
                                         ("accuracy", "accuracy", TRAIN_PEN, "o"),
                                         ("held_accuracy", "accuracy", HELD_PEN, "t"),
                                         ("original", "original", ORIGINAL, "s")):
            self.series[key] = Series(64)
            self.curves[key] = self.plots[plot].plot(pen=pg.mkPen(color, width=2), symbol=symbol, symbolSize=5,
                                                     symbolBrush=color, symbolPen=None)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self._dirty = False
        self.timer = QTimer(self, interval=50)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        control.started.connect(self.clear)
        control.evaluated.connect(self.add)

    @Slot(object)
    def clear(self, started=None) -> None:
        """A new run: its curves only, the steps it will make across."""
        for series in self.series.values():
            series.clear()
        if started is not None:
            for plot in self.plots.values():
                plot.setXRange(started.first_step, started.last_step, padding=0.02)
        self._dirty = True

    @Slot(object)
    def add(self, ev) -> None:
        """One PreferenceEval: a point on each curve it has a value for (accuracies in %)."""
        for key, value, scale in (("loss", ev.loss, 1), ("held_loss", ev.heldout_loss, 1), ("margin", ev.margin, 1),
                                  ("held_margin", ev.heldout_margin, 1), ("accuracy", ev.accuracy, 100),
                                  ("held_accuracy", ev.heldout_accuracy, 100), ("original", ev.base_val_loss, 1)):
            if value is not None:
                self.series[key].append(ev.step, value * scale)
        self._dirty = True

    @Slot()
    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for key, series in self.series.items():
            self.curves[key].setData(*series.view())
