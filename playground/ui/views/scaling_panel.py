"""The Scaling tab: a ladder of model sizes trained one after another on the corpus and settings
in the window, then validation loss against parameters (or training compute) on log-log axes,
with the fitted power law L(N) = E + A·N^-α, its prediction for the next size up, and an honest
warning when the fit is poor. In equal-compute mode each budget draws its loss-against-size
curve with the best size marked. Results export as CSV and PNG; double-click a run to open it.
Before a ladder starts the tab says how long it will take, and asks first when that is long."""

from __future__ import annotations

import csv
import math
from typing import Callable, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.engine.wording import duration, plural
from playground.ui.controllers.scaling_control import MODES, ScalingController, describe_plan, time_left
from playground.ui.views.log_axis import LogAxis
from playground.ui.views.widgets import Message, ask_path, named

COLUMNS = ["params", "layers x width", "tokens", "FLOPs", "seconds", "val loss", "best step", "verdict"]
VERDICT_BRUSH = {"ok": (31, 119, 180), "undertrained": (255, 160, 30), "overfit": (214, 39, 40)}
CURVE_COLORS = [(31, 119, 180), (44, 160, 44), (148, 103, 189), (140, 86, 75)]
LONG_LADDER_S = 15 * 60  # a ladder estimated to take longer asks before it starts
# The defaults train in a minute or two with the window's default settings (the seed preset)
# on a 2-core CPU; the estimate under the fields says what a change costs.
DEFAULT_FRONTIER = "1e11, 3e11, 1e12"


class ScalingPanel(QWidget):
    openRequested = Signal(str)   # the model file of a finished run

    def __init__(self, control: ScalingController, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.control = control
        self.source: Optional[Callable[[], tuple]] = None  # () -> (corpus name, text, model, train)
        self.confirm: Callable[[str], bool] = self._ask  # replaceable: tests answer without a dialog
        self.results: list = []   # RunResult of each finished run
        self.fit = None
        self.total = 0
        self._run_estimates: list[float] = []  # seconds of each planned run of the ladder in flight
        self.mode = named(QComboBox(), "scaleModePicker", "Budget",
                          "Equal tokens: every size sees the same training text. Equal compute: every "
                          "size gets the same FLOPs (6 x parameters x tokens), so small models see more "
                          "text. Frontier: several compute budgets, every size at each")
        for key, words in MODES.items():
            self.mode.addItem(words, key)
        self.sizes = self._spin("scaleSizesSpin", "Sizes", "How many model sizes the ladder trains", 3, 12, 5)
        self.smallest = self._spin("scaleSmallestSpin", "Smallest", "Parameters of the smallest model",
                                   1_000, 10_000_000, 5_000)
        self.largest = self._spin("scaleLargestSpin", "Largest", "Parameters of the largest model",
                                  2_000, 50_000_000, 500_000)
        self.tokens = named(QDoubleSpinBox(), "scaleTokensSpin", "Tokens (millions)",
                            "Training tokens per model, in millions (equal-tokens mode)")
        self.tokens.setRange(0.001, 10_000)
        self.tokens.setDecimals(3)
        self.tokens.setValue(1.0)
        self.flops = named(QLineEdit("3e11"), "scaleFlopsEdit", "Compute",
                           "Training FLOPs per model (equal compute), or several separated by commas "
                           f"for the frontier, e.g. {DEFAULT_FRONTIER}")
        self.plan_label = named(Message("", lines=2), "scalePlanLabel", "Ladder estimate",
                                "How many models the ladder trains and about how long that takes, "
                                "estimated from the window's settings at this computer's measured speed")
        self.run = named(QPushButton("Run ladder"), "scaleRunButton", "Run ladder",
                         "Train every size, one after another, with the window's corpus and settings")
        self.stop = named(QPushButton("Stop"), "scaleStopButton", "Stop",
                          "End the ladder after the current step; finished runs are kept")
        self.progress = named(QProgressBar(), "scaleProgress", "Ladder progress", "Runs finished")
        self.eta = named(Message("", lines=2), "scaleEtaLabel", "Time left",
                         "An estimate from the runs so far, and where the finished runs are kept")
        self.axis = named(QComboBox(), "scaleAxisPicker", "Horizontal axis",
                          "Loss against parameters, or against training compute")
        self.axis.addItems(["parameters", "compute (FLOPs)"])
        for combo in (self.mode, self.axis):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        axes = {"bottom": LogAxis("bottom"), "left": LogAxis("left")}
        self.plot = named(pg.PlotWidget(background="w", axisItems=axes), "scalePlot", "Scaling plot",
                          "Validation loss of each run (log-log); the line is the fitted power law")
        item = self.plot.getPlotItem()
        item.setLogMode(x=True, y=True)
        item.setLabel("left", "validation loss")
        item.setLabel("bottom", "parameters")
        self.fit_label = named(Message("Run a ladder to fit L(N) = E + A·N^-α", lines=3), "scaleFitLabel",
                               "Fit", "The fitted power law and what it predicts for the next size up")
        self.warning = named(Message("", lines=2), "scaleWarning", "Fit warning",
                             "Why the ladder cannot start, or why the fit should not be trusted")
        self.warning.setStyleSheet("color: #b00020;")
        self.table = named(QTableWidget(0, len(COLUMNS)), "scaleTable", "Runs",
                           "Every finished run; double-click one to open its model")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.csv = named(QPushButton("CSV…"), "scaleCsvButton", "Export CSV", "Save the runs as CSV")
        self.png = named(QPushButton("PNG…"), "scalePngButton", "Export PNG", "Save the plot as a picture")
        self._layout()
        self._connect()
        self._mode_changed()
        self.set_running(False)

    def _spin(self, name: str, label: str, tip: str, low: int, high: int, value: int) -> QSpinBox:
        spin = named(QSpinBox(), name, label, tip)
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setGroupSeparatorShown(True)
        return spin

    def _layout(self) -> None:
        grid = QGridLayout()
        for i, (label, widget) in enumerate([("Budget", self.mode), ("Sizes", self.sizes),
                                             ("Tokens (M)", self.tokens), ("FLOPs", self.flops),
                                             ("Smallest", self.smallest), ("Largest", self.largest)]):
            grid.addWidget(QLabel(label), i // 2, (i % 2) * 2)
            grid.addWidget(widget, i // 2, (i % 2) * 2 + 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(grid)
        layout.addWidget(self.plan_label)
        for widgets in ((self.run, self.stop, self.progress), (self.axis, self.csv, self.png)):
            row = QHBoxLayout()
            for widget in widgets:
                row.addWidget(widget)
            layout.addLayout(row)
        layout.addWidget(self.eta)
        layout.addWidget(self.plot, 2)
        layout.addWidget(self.fit_label)
        layout.addWidget(self.warning)
        layout.addWidget(self.table, 1)

    def _connect(self) -> None:
        self.run.clicked.connect(self.start)
        self.stop.clicked.connect(self.control.stop)
        self.axis.currentIndexChanged.connect(self.redraw)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        for spin in (self.sizes, self.smallest, self.largest):
            spin.valueChanged.connect(self.refresh_if_shown)
        self.tokens.valueChanged.connect(self.refresh_if_shown)
        self.flops.textChanged.connect(self.refresh_if_shown)
        self.table.cellDoubleClicked.connect(self._open_row)
        self.csv.clicked.connect(lambda: ask_path(self, "Export runs", "scaling.csv", "CSV files (*.csv)",
                                                  self.export_csv))
        self.png.clicked.connect(lambda: ask_path(self, "Export plot", "scaling.png", "PNG images (*.png)",
                                                  self.export_png))
        self.control.ladderStarted.connect(self._ladder_started)
        self.control.runFinished.connect(self._run_finished)
        self.control.ladderDone.connect(self._ladder_done)
        self.control.failed.connect(self._failed)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh_estimate()  # the window's settings may have changed while the tab was hidden

    # -- planning -------------------------------------------------------------------------
    @Slot()
    def _mode_changed(self) -> None:
        mode = self.mode.currentData()
        self.tokens.setEnabled(mode == "tokens")
        self.flops.setEnabled(mode != "tokens")
        if mode == "frontier" and "," not in self.flops.text():
            self.flops.setText(DEFAULT_FRONTIER)
        self.refresh_estimate()

    def budgets(self) -> list[float]:
        """The FLOPs field as numbers; raises ValueError with words when it is not."""
        try:
            values = [float(v) for v in self.flops.text().replace(" ", "").split(",") if v]
        except ValueError:
            raise ValueError(f"FLOPs must be numbers like 3e12, not {self.flops.text()!r}") from None
        if not values or any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError("FLOPs must be positive numbers like 3e12")
        return values

    def request(self) -> dict:
        """What Run ladder starts (ScalingController.start's arguments), from the fields and the
        window's corpus and settings; ValueError in words when it cannot start."""
        if self.source is None:
            raise ValueError("The ladder has no corpus or settings to train with yet")
        mode = self.mode.currentData()
        budgets = tuple(self.budgets()) if mode != "tokens" else ()
        name, text, model, train = self.source()
        return dict(corpus_name=name, text=text, model=model, train=train, mode=mode,
                    sizes=self.sizes.value(), amount=self.tokens.value() * 1e6 if mode == "tokens" else budgets[0],
                    budgets=budgets, smallest=self.smallest.value(), largest=self.largest.value())

    @Slot()
    def refresh_if_shown(self) -> None:
        """refresh_estimate while the tab is on screen (showEvent refreshes it when it comes
        back): planning a ladder costs ~25 ms, and the window's settings change often."""
        if self.isVisible():
            self.refresh_estimate()

    @Slot()
    def refresh_estimate(self) -> Optional[float]:
        """Say how many models the ladder trains and about how long that takes; the seconds,
        or None when it cannot be planned (the reason is shown instead)."""
        if self.source is None:
            return None
        try:
            seconds = self.control.estimate(**self.request())
        except ValueError as exc:
            self.plan_label.setText(str(exc))
            return None
        self.plan_label.setText(describe_plan(seconds))
        return sum(seconds)

    def _ask(self, text: str) -> bool:
        answer = QMessageBox.question(self, "A long scaling ladder", text,
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    # -- running --------------------------------------------------------------------------
    @Slot()
    def start(self) -> bool:
        """Start the ladder the fields describe; one estimated over LONG_LADDER_S asks first.
        False when it did not start (the reason is shown)."""
        if self.control.running or self.source is None:
            return False
        try:
            request = self.request()
            seconds = self.control.estimate(**request)
        except ValueError as exc:
            self.warning.setText(str(exc))
            return False
        self.plan_label.setText(describe_plan(seconds))
        if sum(seconds) > LONG_LADDER_S and not self.confirm(
                f"{describe_plan(seconds)}. The window stays usable, and Stop keeps the finished "
                "runs. Start it?"):
            return False
        started = self.control.start(**request)
        if started:
            self.results, self.fit, self._run_estimates = [], None, seconds
            self.table.setRowCount(0)
            self.warning.setText("")
            self.eta.setText("")
            self.fit_label.setText("Training the ladder…")
            self.set_running(True)
            self.redraw()
        return started

    def set_running(self, running: bool) -> None:
        self.run.setEnabled(not running)
        self.stop.setEnabled(running)

    @Slot(object)
    def _ladder_started(self, event) -> None:
        self.total = len(event.runs)
        if len(self._run_estimates) != self.total:  # planned elsewhere: the engine's estimate only
            self._run_estimates = []
        self.progress.setRange(0, max(self.total, 1))
        self.progress.setValue(0)
        self.progress.setFormat(f"%v of {plural(self.total, 'run')}")
        self.warning.setText(event.warning)

    def seconds_left(self, finished: list, engine_guess: Optional[float]) -> Optional[float]:
        """time_left from this panel's plan; the engine's guess for a ladder planned elsewhere."""
        left = time_left(self._run_estimates, [r.train_seconds for r in finished])
        return engine_guess if left is None else left

    @Slot(object)
    def _run_finished(self, event) -> None:
        r = event.result
        self.results.append(r)
        self.progress.setValue(len(self.results))
        left = self.seconds_left(self.results, event.seconds_left)
        self.eta.setText("" if left is None else f"about {duration(left)} left")
        row = self.table.rowCount()
        self.table.insertRow(row)
        cells = [f"{r.params:,}", f"{r.n_layer} x {r.n_embd}", f"{r.tokens:,}", f"{r.flops:.2e}",
                 f"{r.train_seconds:.1f}", "" if r.val_loss is None else f"{r.val_loss:.4f}",
                 "" if r.best_step is None else str(r.best_step), r.verdict]
        for column, text in enumerate(cells):
            cell = QTableWidgetItem(text)
            cell.setData(Qt.UserRole, r.path)
            self.table.setItem(row, column, cell)
        self.redraw()

    @Slot(object)
    def _ladder_done(self, event) -> None:
        self.fit = event.fit
        self.set_running(False)
        self.eta.setText(("Stopped: " if event.stopped else "Done: ")
                         + f"{plural(len(event.runs), 'run')} kept in {self.control.out_dir}")
        if event.frontier:
            self.fit_label.setText("The best size for each budget (green star): "
                                   + "; ".join(f"{budget:.1e} FLOPs: {params:,} parameters (loss {loss:.3f})"
                                               for budget, params, loss in event.frontier))
        elif event.fit is None:
            self.fit_label.setText("Too few finished runs to fit a power law (it needs at least three)")
        else:
            f = event.fit
            text = f"L(N) = {f.E:.3f} + {f.A:.3g}·N^-{f.alpha:.3f}  (R² = {f.r2:.3f}, {plural(f.points, 'run')})"
            if f.next_params and f.predicted_loss is not None:
                text += f"; the next size up, {f.next_params:,} parameters, would reach {f.predicted_loss:.3f}"
            self.fit_label.setText(text)
            self.warning.setText(f.warning)
        self.redraw()

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.set_running(False)
        self.warning.setText(f"The ladder stopped: {message}")

    # -- drawing and export -------------------------------------------------------------
    def points(self) -> tuple[np.ndarray, np.ndarray]:
        done = [r for r in self.results if r.val_loss is not None]
        x = [r.flops if self.axis.currentIndex() == 1 else r.params for r in done]
        return np.array(x, dtype=float), np.array([r.val_loss for r in done], dtype=float)

    @Slot()
    def redraw(self) -> None:
        item = self.plot.getPlotItem()
        item.clear()
        item.setLabel("bottom", "training compute (FLOPs)" if self.axis.currentIndex() else "parameters")
        done = [r for r in self.results if r.val_loss is not None]
        by_budget: dict[int, list] = {}
        for r in done:
            by_budget.setdefault(r.budget_index, []).append(r)
        frontier = self.mode.currentData() == "frontier" and len(by_budget) > 0
        for b, runs in by_budget.items():
            x, y = self._xy(runs)
            pen = pg.mkPen(CURVE_COLORS[b % len(CURVE_COLORS)], width=1.5) if frontier else None
            brushes = [pg.mkBrush(*VERDICT_BRUSH.get(r.verdict, (31, 119, 180))) for r in runs]
            item.plot(x, y, pen=pen, symbol="o", symbolSize=9, symbolBrush=brushes, symbolPen=None)
            if frontier:
                best = int(np.argmin(y))
                item.plot([x[best]], [y[best]], pen=None, symbol="star", symbolSize=16, symbolBrush=(44, 160, 44))
        self.fit_line = None
        if self.fit is not None and done and self.axis.currentIndex() == 0 and not frontier:
            low = min(r.params for r in done)
            high = self.fit.next_params or max(r.params for r in done)
            n = np.geomspace(low, high, 50)
            self.fit_line = item.plot(n, [self.fit.loss(v) for v in n],
                                      pen=pg.mkPen((90, 90, 90), width=1.5, style=Qt.DashLine))
            if self.fit.next_params and self.fit.predicted_loss is not None:
                item.plot([self.fit.next_params], [self.fit.predicted_loss], pen=None, symbol="t",
                          symbolSize=12, symbolBrush=None, symbolPen=pg.mkPen((90, 90, 90)))

    def _xy(self, runs: list) -> tuple[list, list]:
        return ([r.flops if self.axis.currentIndex() == 1 else r.params for r in runs],
                [r.val_loss for r in runs])

    def export_csv(self, path: str) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["params", "n_layer", "n_embd", "tokens", "flops", "train_seconds", "val_loss",
                          "best_step", "verdict", "budget_index", "path"])
            for r in self.results:
                out.writerow([r.params, r.n_layer, r.n_embd, r.tokens, r.flops, r.train_seconds, r.val_loss,
                              r.best_step, r.verdict, r.budget_index, r.path])

    def export_png(self, path: str) -> None:
        from pyqtgraph.exporters import ImageExporter
        ImageExporter(self.plot.getPlotItem()).export(path)

    @Slot(int, int)
    def _open_row(self, row: int, _column: int) -> None:
        path = self.table.item(row, 0).data(Qt.UserRole)
        if path:
            self.openRequested.emit(path)
