"""Training health: the learning-rate schedule (previewed before training, marked live), the
gradient norm with the count of clipped steps, and plain-words hints when something is off
(a fine-tune that costs the model its original text among them)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from playground.engine.config import TrainConfig
from playground.engine.training.health import diagnose, forgetting, overfitting
from playground.engine.training.schedule import schedule
from playground.ui.controllers.loss_history import Series
from playground.ui.views.widgets import Message, named

REFRESH_MS = 300


class HealthPanel(QWidget):
    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the TrainingController whose runs this watches."""
        super().__init__(parent)
        self.control = control
        self.grad = Series()
        self.losses = Series()     # the model's losses since it was new, for the hints
        self.evals: list[tuple[int, float, Optional[float]]] = []  # (step, train, validation)
        # a fine-tune's (step, new text's validation, original text's validation), from step 0
        self.forgets: list[tuple[int, Optional[float], float]] = []
        self.vocab_size, self.step = 1, 0
        self.clipped = 0
        self.first_step = 0
        self._pinned, self._grad_top = False, 0.0  # the gradient chart during a run (see begin)
        self.lr_plot = named(pg.PlotWidget(background="w"), "lrPlot", "Learning-rate schedule",
                             "The learning rate at each step of this run: warm-up, then cosine decay")
        self.lr_plot.setMinimumHeight(90)
        # titles above the charts: a vertical axis title is cut on a short dock
        self.lr_plot.getPlotItem().setTitle("learning rate", size="9pt")
        self.lr_curve = self.lr_plot.plot(pen=pg.mkPen((44, 160, 44), width=2))
        self.lr_marker = pg.InfiniteLine(angle=90, pen=pg.mkPen((200, 0, 0)))
        self.lr_plot.addItem(self.lr_marker)
        self.grad_plot = named(pg.PlotWidget(background="w"), "gradPlot", "Gradient norm",
                               "How big each step's gradient was, before clipping")
        self.grad_plot.setMinimumHeight(90)
        self.grad_plot.getPlotItem().setTitle("gradient norm", size="9pt")
        self.grad_curve = self.grad_plot.plot(pen=pg.mkPen((148, 103, 189)))
        self.clipped_label = named(Message("Clipped steps: 0", lines=2), "clippedLabel", "Clipped steps",
                                   "Steps whose gradient was scaled down to the clip value")
        # beside the charts, not under them: on a short dock a hint under them was drawn over them
        self.hint = named(Message("", lines=9), "healthHint", "Health hint", "Advice when training looks wrong")
        self.hint.setStyleSheet("color: #a15c00; font-weight: bold;")
        text = QVBoxLayout()
        text.addWidget(self.clipped_label)
        text.addWidget(self.hint)
        text.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.lr_plot, 2)
        layout.addWidget(self.grad_plot, 2)
        layout.addLayout(text, 3)
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        control.started.connect(self._started)
        control.stepped.connect(self._stepped)
        control.evaluated.connect(self._evaluated)
        control.ended.connect(self._ended)

    @Slot(object)
    def _started(self, ev) -> None:
        if ev.first_step == 0:  # a new model, or a fine-tune (whose first evaluation is at step 0)
            self.losses.clear()
            self.evals.clear()
            self.forgets.clear()
        # a run goes on from its first step (the kept best weights may lie before the last)
        self.evals = [e for e in self.evals if e[0] <= ev.first_step]
        self.forgets = [e for e in self.forgets if e[0] <= ev.first_step]
        self.vocab_size = ev.vocab_size
        self.begin(ev.first_step, ev.last_step)
        self.preview(self.control.train_config, ev.first_step)
        self.timer.start()

    @Slot(object)
    def _stepped(self, ev) -> None:
        self.add_step(ev.step, ev.grad_norm, ev.clipped)
        if math.isfinite(ev.loss):
            self.losses.append(ev.step, ev.loss)
        self.step = ev.step

    @Slot(object)
    def _evaluated(self, ev) -> None:
        self.evals.append((ev.step, ev.train_loss, ev.val_loss))
        if ev.base_val_loss is not None:
            self.forgets.append((ev.step, ev.val_loss, ev.base_val_loss))

    @Slot(object)
    def _ended(self, done) -> None:
        self.timer.stop()
        self.refresh(None if done is None else done.status)
        self.end()

    def reset(self) -> None:
        """A model from a file: nothing of the previous model's run stays."""
        self.grad.clear()
        self.losses.clear()
        self.evals.clear()
        self.forgets.clear()
        self.clipped, self.step = 0, 0
        self.grad_curve.setData([], [])
        self.clipped_label.setText("Clipped steps: 0")
        self.hint.setText("")

    def preview(self, cfg: Optional[TrainConfig], first_step: int = 0) -> None:
        """Show the schedule a run with these settings would follow (before or during it)."""
        if cfg is None or cfg.problems():
            return
        self.first_step = first_step
        lrs = schedule(cfg)
        self.lr_curve.setData(np.arange(first_step + 1, first_step + len(lrs) + 1), np.array(lrs))
        self.lr_plot.setYRange(0, max(lrs) * 1.15, padding=0)  # a flat schedule still reads right
        self.lr_marker.setPos(first_step)

    def begin(self, first_step: int, last_step: Optional[int] = None) -> None:
        """A run starts. With its last step known, the gradient chart's x range is pinned to
        the run and its y range only grows: autoranging re-laid out both axes at every refresh,
        and the GUI thread's work takes a core from training."""
        self.grad.clear()
        self.clipped = 0
        self.hint.setText("")
        item = self.grad_plot.getPlotItem()
        if last_step is not None and last_step > first_step:
            item.disableAutoRange()
            item.setXRange(first_step, last_step, padding=0.02)
            self._pinned, self._grad_top = True, 0.0
        else:
            self.end()

    def end(self) -> None:
        """The run is over: the chart frames all its points again."""
        self._pinned = False
        self.grad_plot.getPlotItem().enableAutoRange()

    def add_step(self, step: int, grad_norm: float, clipped: bool) -> None:
        if math.isfinite(grad_norm):
            self.grad.append(step, grad_norm)
        self.clipped += bool(clipped)

    @Slot()
    def refresh(self, status: Optional[str] = None) -> None:
        self.lr_marker.setPos(self.step)
        x, y = self.grad.view()
        self.grad_curve.setData(x, y)
        if self._pinned and len(y) and y.max() > self._grad_top:
            self._grad_top = float(y.max()) * 1.15
            self.grad_plot.getPlotItem().setYRange(0, self._grad_top, padding=0)
        self.clipped_label.setText(f"Clipped steps: {self.clipped:,} of {self.grad.n:,}")
        cfg, adapt = self.control.train_config, self.control.adaptation
        # a fine-tune's own trouble first: on a short dock the second hint is what gets cut
        hints = [forgetting(self.forgets, adapt.method, adapt.replay) if adapt is not None else "",
                 diagnose(self.losses.view()[1], self.vocab_size, status)
                 or overfitting(self.evals, cfg.keep if cfg is not None else "best")]
        self.hint.setText("\n".join(h for h in hints if h))
