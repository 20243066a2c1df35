"""Live loss plot: raw training loss (faint), a debiased moving average over it, validation
points, a fine-tune's loss on its original text (what it forgets), a dashed "random guessing"
line at ln(vocabulary), hover read-out, log-y, PNG/CSV export. In nats per token, or in bits
per character, which compares runs of different tokenizers.

Points go into preallocated float64 arrays; a timer redraws at most every 50 ms, so 100,000
steps stay smooth (pyqtgraph clips to the view and downsamples by peak).
"""

from __future__ import annotations

import html
import math
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from playground.ui.controllers.loss_history import LossHistory, Series
from playground.ui.views.widgets import Message, ask_path, compact, named

SMOOTHING = 0.9   # default weight of the past in the moving average (debiased like TensorBoard's)
MAX_RUNS = 8      # earlier runs kept on the plot as faint curves
ORIGINAL = (117, 84, 180)  # a fine-tune's original text: purple squares on a dashed line
REDRAW_MS = 100  # 10 frames/s: smooth to the eye, and the GUI thread leaves the GIL to training


class LossPlot(QWidget):
    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the TrainingController whose runs this plots."""
        super().__init__(parent)
        self.control = control
        self._label = ""                 # the settings of the run on the plot, for its legend
        self._tag = ""                   # a fine-tune's method ("full", "LoRA r8"), for the list of runs
        self.data = LossHistory(SMOOTHING)
        self.raw, self.smooth, self.val = self.data.raw, self.data.smooth, self.data.val
        self.original = self.data.original
        self.runs: list[pg.PlotDataItem] = []   # earlier runs, faint
        self._reference: Optional[float] = None
        self._dirty = False
        self._fixed = False    # ranges pinned during a run (see begin_run)
        self._y_top = 0.0
        self.redraws = 0

        self.plot = named(pg.PlotWidget(background="w"), "lossPlot", "Loss plot",
                          "Training loss (faint: every step; dark: smoothed) and validation loss "
                          "(dots). Lower is better; the dashed line is random guessing")
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss (nats per token)")
        item.showGrid(x=False, y=False)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        self.raw_curve = item.plot(pen=pg.mkPen((31, 119, 180, 70), width=1), name="training loss")
        self.smooth_curve = item.plot(pen=pg.mkPen((31, 119, 180), width=2), name="smoothed",
                                      antialias=True)
        self.val_points = item.plot(pen=None, symbol="o", symbolSize=7, symbolBrush=(230, 85, 13),
                                    symbolPen=None, name="validation loss")
        self.original_points = item.plot(pen=pg.mkPen(ORIGINAL, width=1.5, style=Qt.DashLine), symbol="s",
                                         symbolSize=7, symbolBrush=ORIGINAL, symbolPen=None, name="original text")
        self.best_point = item.plot(pen=None, symbol="star", symbolSize=16, symbolBrush=(44, 160, 44),
                                    symbolPen=pg.mkPen((20, 90, 20)), name="best")
        self.best: Optional[tuple] = None  # (step, validation loss, seconds) of the best weights
        self.guess_line = pg.InfiniteLine(angle=0, movable=False,
                                          pen=pg.mkPen((120, 120, 120), width=1, style=Qt.DashLine),
                                          label="random guessing",
                                          # at the right end, under the line (a falling loss is far
                                          # below there, and the top of the plot would cut it)
                                          labelOpts={"position": 0.98, "anchors": [(1, 0), (1, 0)],
                                                     "color": (90, 90, 90)})
        self.guess_line.hide()
        item.addItem(self.guess_line)
        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((230, 85, 13), width=1))
        self.marker.hide()
        item.addItem(self.marker)
        # the legend sits under the plot, where it can never cover a curve; three lines always,
        # so earlier runs never squeeze the plot (their whole labels are in the tooltip)
        self.legend = named(QLabel(), "plotLegend", "Plot legend", "What each curve and mark is")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.RichText)
        self.legend.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.legend.setFixedHeight(3 * self.legend.fontMetrics().lineSpacing() + 4)
        self.legend.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self._runs_made = 0    # runs archived so far: each earlier run is "run N" in the legend
        self._final: Optional[tuple] = None   # (loss, "val" or "loss") the run ended with
        self._owner = control  # whose run is drawn: the model's training, or a scaling ladder's
        self._model_history: Optional[dict] = None  # the model's curve while a ladder has the plot

        self.log_y = named(QCheckBox("log y"), "logYCheck", "Logarithmic loss axis",
                           "Show the loss on a logarithmic scale, to see small late improvements")
        self.export = named(QToolButton(), "exportButton", "Export the plot",
                            "Save the plot as a PNG picture, or every step's losses as CSV")
        self.export.setText("Export")
        self.export.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.export)
        for name, title, file, kinds, then in (
                ("exportPngAction", "Picture (PNG)…", "loss.png", "PNG images (*.png)", self.export_png),
                ("exportCsvAction", "Data (CSV)…", "loss.csv", "CSV files (*.csv)", self.export_csv)):
            menu.addAction(title, lambda f=file, k=kinds, t=then: ask_path(self, "Export", f, k, t)).setObjectName(name)
        self.export.setMenu(menu)
        self.smoothing_slider = named(QSlider(Qt.Horizontal), "smoothingSlider", "Smoothing",
                                      "Smoothing of the dark curve: a moving average that weighs the "
                                      "past this much (0 shows every step as it is)")
        self.smoothing_slider.setRange(0, 99)
        self.smoothing_slider.setValue(int(SMOOTHING * 100))
        self.smoothing_slider.setMinimumWidth(40)
        self.smoothing_slider.setMaximumWidth(140)
        self.x_axis = named(QComboBox(), "xAxisPicker", "Horizontal axis",
                            "Plot against steps, or against seconds of training (to compare speed)")
        self.x_axis.addItems(["step", "time (s)"])
        self.unit = named(QComboBox(), "unitPicker", "Loss unit",
                          "Nats per token (what training minimises), or bits per character, "
                          "which compares models of different tokenizers on one chart")
        self.unit.addItems(["nats/token", "bits/char"])
        self.readout = named(Message("Hover over the plot to read values", lines=1, reserve=True),
                             "plotReadout", "Plot read-out", "The values under the mouse pointer")
        compact([self.x_axis, self.unit], chars=4)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("smoothing"))
        bar.addWidget(self.smoothing_slider)
        bar.addWidget(self.x_axis)
        bar.addWidget(self.unit)
        bar.addWidget(self.log_y)
        bar.addWidget(self.export)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.readout)
        layout.addLayout(bar)
        self._update_legend()

        self.log_y.toggled.connect(self._set_log)
        self.smoothing_slider.valueChanged.connect(self._set_smoothing)
        self.x_axis.currentIndexChanged.connect(self._set_axis)
        self.unit.currentIndexChanged.connect(self._set_unit)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.timer = QTimer(self, interval=REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.follow(control)

    def follow(self, control) -> None:
        """Draw the runs of this controller (training, or a scaling ladder) as they train."""
        control.started.connect(lambda ev: self._started(ev, control))
        control.stepped.connect(self._stepped)
        control.evaluated.connect(self._evaluated)
        control.ended.connect(self.end_run)

    # -- runs -------------------------------------------------------------------------
    def _started(self, ev, control) -> None:
        label = control.run_label
        if control is not self.control and self._owner is self.control and self.raw.n:
            self._model_history = self.history()  # a ladder takes the plot: the model's curve is kept
        self._owner = control
        if ev.first_step == 0:  # a fresh model: the previous run stays on the plot, faint, named
            self.archive()      # with the loss of the weights it kept
        elif self.raw.n and self.raw.x[self.raw.n - 1] > ev.first_step:
            self.data.rewind(ev.first_step)  # continuing from the kept best weights
        else:
            self.continue_run()
        self._final = None
        self._label = label  # a continued run's label says what it added
        self._tag = getattr(control, "run_tag", "")
        self.data.set_chars_per_token(ev.chars_per_token)
        self.set_vocab_size(ev.vocab_size)
        self.begin_run(ev.first_step, ev.last_step)

    @Slot(object)
    def _stepped(self, ev) -> None:
        self.add_step(ev.step, ev.loss, ev.elapsed_s)

    @Slot(object)
    def _evaluated(self, ev) -> None:
        self.add_validation(ev.step, ev.val_loss, ev.elapsed_s)
        self._dirty |= self.data.add_original(ev.step, ev.base_val_loss, ev.elapsed_s)
        if ev.base_val_loss is not None and self.original.n == 1:
            self._update_legend()  # a fine-tune: its validation is the new text's, beside the original's
        if ev.best_step == ev.step and ev.val_loss is not None:  # a new best: mark it
            self.best = (ev.step, ev.val_loss, ev.elapsed_s)
            self._update_legend()
            self._dirty = True

    def _update_legend(self) -> None:
        def entry(color: str, mark: str, text: str) -> str:
            return f"<span style='color:{color}'>{mark}</span>&nbsp;{html.escape(text)}"
        items = [entry("#9cc3e0", "━", "loss at each step"), entry("#1f77b4", "━", "smoothed")]
        if self.original.n:  # a fine-tune: the new text's validation, and what the original text costs
            items += [entry("#e6550d", "●", "validation: new text"),
                      entry(pg.mkColor(ORIGINAL).name(), "■", "original text (what it forgets)")]
        else:
            items.append(entry("#e6550d", "●", "validation"))
        if self.best is not None:
            items.append(entry("#2ca02c", "★", f"best: step {self.best[0]:,}, validation "
                                               f"{self.best[1] * self.data.scale:.4f}"))
        tips = [f"this run: {self._label}"] if self._label else []
        if self.runs:  # earlier runs by number only: their settings and results are in the tooltip
            marks = "&nbsp;".join(f"<span style='color:{c.opts['pen'].color().name()}'>━</span>"
                                  f"{html.escape(c.name().partition(':')[0].removeprefix('run '))}"
                                  f"{html.escape(' ' + c.tag) if getattr(c, 'tag', '') else ''}" for c in self.runs)
            compared = any(run.extras for run in self.runs)  # fine-tunes: their two validation curves
            items.append(f"earlier runs (hover): {marks}" + (" (● new text, ■ original)" if compared else ""))
            tips += [curve.name() for curve in self.runs]
        self.legend.setText(" &nbsp; ".join(items))
        self.legend.setToolTip("What each curve and mark is. Faint curves are earlier runs:\n" + "\n".join(tips)
                               if self.runs else "What each curve and mark is" + (f"\n{tips[0]}" if tips else ""))

    def archive(self) -> None:
        """Keep the run on the plot as a faint curve (a new model is about to replace it)."""
        if self.raw.n:
            value, kind = self._final or (float(self.smooth.y[self.smooth.n - 1]), "loss")
            self._runs_made += 1
            self.archive_run(f"run {self._runs_made}: {self._label or 'a run'} -> {kind} {value:.3f} "
                             f"({value * self.data.to_bpc:.2f} bits/char)")
        else:
            self.clear()
        self._final = None
        self.readout.setText("Hover over the plot to read values")

    def begin_run(self, first_step: int, last_step: int) -> None:
        """Fix the x range to the run and grow y only upwards: with auto-range, every frame
        would move the axes and regenerate their ticks, the plot's main cost."""
        item = self.plot.getPlotItem()
        item.disableAutoRange()
        if self.x_axis.currentIndex() == 0:
            left = self.raw.x[0] if self.raw.n else first_step
            item.setXRange(left, last_step, padding=0.02)
        else:
            item.enableAutoRange(x=True)
        self._y_top = 0.0
        self._fixed = True

    @Slot()
    def end_run(self, done=None) -> None:
        if done is not None:  # the loss of the weights kept, for the legend once archived
            self._final = (done.final_val_loss, "val") if done.final_val_loss is not None else \
                (done.final_loss, "loss") if done.final_loss is not None else None
        self._fixed = False
        self.redraw()
        self.plot.getPlotItem().enableAutoRange()

    def _grow_y(self) -> None:
        if not self._fixed or self.log_y.isChecked():
            return
        top = max(self.raw.y[: self.raw.n].max() if self.raw.n else 0.0,
                  self.original.y[: self.original.n].max() if self.original.n else 0.0,
                  self._reference or 0.0) * self.data.scale
        if top > self._y_top:
            self._y_top = top * 1.08
            self.plot.getPlotItem().setYRange(0, self._y_top, padding=0)

    # -- data in ------------------------------------------------------------------------
    def clear(self) -> None:
        self.data.clear()
        self.marker.hide()
        self.best = None
        self._update_legend()
        self._dirty = True

    def archive_run(self, label: str) -> None:
        """Keep the current run as a faint curve with its settings in the legend, then clear. A
        fine-tune keeps its two validation curves too, in the run's colour: the new text's
        (dots) and the original text's (dashed, squares), so runs compare on one chart."""
        if self.raw.n:
            color = pg.intColor(len(self.runs), hues=MAX_RUNS, alpha=110)
            curve = self._faint(self.smooth, self.data.times, pg.mkPen(color, width=1.5), label)
            curve.tag, curve.extras = self._tag, []
            if self.original.n:
                dots = {"symbol": "o", "symbolSize": 5, "symbolBrush": color, "symbolPen": None}
                curve.extras = [
                    self._faint(self.val, self.data.val_times, pg.mkPen(color, width=1.5), f"{label} (new text)", **dots),
                    self._faint(self.original, self.data.original_times, pg.mkPen(color, width=1.5, style=Qt.DashLine),
                                f"{label} (original text)", **{**dots, "symbol": "s"})]
            self.runs.append(curve)
            if len(self.runs) > MAX_RUNS:
                old = self.runs.pop(0)
                for item in [old] + old.extras:
                    self.plot.getPlotItem().removeItem(item)
        self.clear()

    def _faint(self, series: Series, times: Series, pen, name: str, **symbols) -> pg.PlotDataItem:
        """A copy of a series drawn faint behind the run in flight, with what redraws it in
        another unit or against time."""
        x, y = self._xy(series)
        curve = self.plot.getPlotItem().plot(x.copy(), y.copy(), pen=pen, name=name, **symbols)
        curve.setZValue(-10)
        curve.setProperty("steps", series.x[: series.n].copy())
        curve.setProperty("times", times.y[: times.n].copy())
        curve.setProperty("nats", series.y[: series.n].copy())
        curve.setProperty("to_bpc", self.data.to_bpc)
        return curve

    def continue_run(self) -> None:
        self.data.continue_run()

    def mark_step(self, step: int) -> None:
        by_time = self.x_axis.currentIndex() == 1 and self.raw.n
        self.marker.setPos(self.data.seconds_at(step) if by_time else step)
        self.marker.show()

    def set_vocab_size(self, vocab_size: int) -> None:
        self._reference = math.log(vocab_size) if vocab_size > 1 else None
        self._place_reference()

    def add_step(self, step: int, loss: float, elapsed: float = 0.0) -> None:
        self._dirty |= self.data.add_step(step, loss, elapsed)

    def add_validation(self, step: int, loss: Optional[float], elapsed: float = 0.0) -> None:
        self._dirty |= self.data.add_validation(step, loss, elapsed)

    @Slot(int)
    def _set_smoothing(self, value: int) -> None:
        self.data.set_smoothing(value / 100.0)
        self._dirty = True
        self.redraw()

    @Slot(int)
    def _set_unit(self, index: int) -> None:
        self.data.per_char = index == 1
        self.plot.getPlotItem().setLabel("left", "loss (bits per character)" if index else "loss (nats per token)")
        self._y_top = 0.0
        self._place_reference()
        self._update_legend()
        self._set_axis(self.x_axis.currentIndex())   # redraws every curve, earlier runs too

    @Slot(int)
    def _set_axis(self, index: int) -> None:
        self.plot.getPlotItem().setLabel("bottom", "step" if index == 0 else "seconds of training")
        # each earlier run in the shown unit, by its own characters per token
        for curve in [c for run in self.runs for c in [run] + run.extras]:
            x = curve.property("steps" if index == 0 else "times")
            y = curve.property("nats") * (curve.property("to_bpc") if self.data.per_char else 1.0)
            if x is not None and len(x) == len(y):
                curve.setData(x, y)
        self._dirty = True
        self.redraw()
        self.plot.getPlotItem().enableAutoRange()

    def _xy(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """A series against the chosen axis: steps, or training seconds."""
        return self.data.xy(series, by_time=self.x_axis.currentIndex() == 1)

    @property
    def point_count(self) -> int:
        return self.raw.n

    # -- drawing ------------------------------------------------------------------------
    @Slot()
    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self._grow_y()
        self.raw_curve.setData(*self._xy(self.raw))
        self.smooth_curve.setData(*self._xy(self.smooth))
        self.val_points.setData(*self._xy(self.val))
        self.original_points.setData(*self._xy(self.original))
        if self.best is None:
            self.best_point.setData([], [])
        else:
            step, loss, seconds = self.best
            self.best_point.setData([seconds if self.x_axis.currentIndex() == 1 else step], [loss * self.data.scale])
        self.redraws += 1

    def _place_reference(self) -> None:
        if self._reference is None:
            self.guess_line.hide()
            return
        shown = self._reference * self.data.scale
        self.guess_line.setPos(math.log10(shown) if self.log_y.isChecked() else shown)
        unit = "bits/char" if self.data.per_char else "nats/token"
        self.guess_line.label.setFormat(f"random guessing: ln(vocabulary) = {shown:.2f} {unit}")
        self.guess_line.show()

    @Slot(bool)
    def _set_log(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(y=on)
        if on or not self._fixed:
            self.plot.getPlotItem().enableAutoRange(y=True)
        else:
            self._y_top = 0.0
        self._place_reference()

    @Slot(object)
    def _hover(self, pos) -> None:
        if self.raw.n == 0 or not self.plot.sceneBoundingRect().contains(pos):
            return
        x = self.plot.getPlotItem().vb.mapSceneToView(pos).x()
        self.readout.setText(self.data.readout(x, by_time=self.x_axis.currentIndex() == 1))

    # -- kept with the model -------------------------------------------------------------
    def history(self, max_points: int = 2000) -> dict:
        """The run's curve as plain lists (every k-th step when there are more than max_points),
        saved with the model so that opening it shows how it learned."""
        stride = max(1, -(-self.raw.n // max_points))
        steps, losses = self.raw.view()
        vsteps, vlosses = self.val.view()
        extra = {}
        if self.original.n:  # a fine-tune's: what it forgot, from the evaluation before it
            osteps, olosses = self.original.view()
            extra = {"tag": self._tag, "original_steps": osteps[-max_points:].astype(int).tolist(),
                     "original_loss": olosses[-max_points:].round(6).tolist(),
                     "original_seconds": self.data.original_times.y[: self.data.original_times.n][-max_points:]
                     .round(3).tolist()}
        return {**extra, "label": self._label, "to_bpc": self.data.to_bpc,
                "steps": steps[::stride].astype(int).tolist(), "loss": losses[::stride].round(6).tolist(),
                "seconds": self.data.times.y[: self.data.times.n][::stride].round(3).tolist(),
                "val_steps": vsteps[-max_points:].astype(int).tolist(),
                "val_loss": vlosses[-max_points:].round(6).tolist(),
                "val_seconds": self.data.val_times.y[: self.data.val_times.n][-max_points:].round(3).tolist()}

    def model_history(self) -> Optional[dict]:
        """The curve of the model in hand (not a scaling ladder's, which may be on the plot)."""
        return self.history() if self._owner is self.control else self._model_history

    def restore_history(self, history) -> bool:
        """Show a saved curve as the model's own (after archiving what was on the plot); False,
        and nothing drawn, when there is none or it is malformed (a file is not trusted)."""
        try:
            raw = list(zip(*(map(float, history[k]) for k in ("steps", "loss", "seconds")), strict=True))
            val = list(zip(*(map(float, history[k]) for k in ("val_steps", "val_loss", "val_seconds")),
                           strict=True))
            original = list(zip(*(map(float, history.get(k, ())) for k in
                                  ("original_steps", "original_loss", "original_seconds")), strict=True))
            to_bpc = float(history.get("to_bpc", self.data.to_bpc))
            label, tag = str(history.get("label", ""))[:200], str(history.get("tag", ""))[:40]
        except (TypeError, ValueError, KeyError, AttributeError):
            return False
        self._owner, self._model_history = self.control, None
        if history != self.history():  # the same model opened again: one curve, not two
            self.archive()
        else:
            self.clear()
        self._label, self._tag = label, tag
        if math.isfinite(to_bpc) and to_bpc > 0:
            self.data.to_bpc = to_bpc
        for step, loss, seconds in raw:
            self.data.add_step(int(step), loss, seconds)
        for step, loss, seconds in val:
            self.data.add_validation(int(step), loss, seconds)
        for step, loss, seconds in original:
            self.data.add_original(int(step), loss, seconds)
        self._update_legend()
        self._dirty = True
        self.redraw()
        self.plot.getPlotItem().enableAutoRange()
        return self.raw.n > 0

    # -- export -------------------------------------------------------------------------
    def export_png(self, path: str) -> None:
        from pyqtgraph.exporters import ImageExporter
        self.redraw()
        ImageExporter(self.plot.getPlotItem()).export(path)

    def export_csv(self, path: str) -> None:
        self.data.write_csv(path)

