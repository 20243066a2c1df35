"""The Scaling tab: a ladder of three tiny models trains end to end in the window (each run on
the loss plot as it trains), the plot holds three points and a fitted line, results export, a
run opens like a saved model, and Stop mid-ladder keeps the finished runs. The tab says how long
a ladder will take (the default one a minute or two), asks before a long one, keeps its long
messages from widening the window, and labels its log axes without overlap."""

import csv

import pytest
from PySide6.QtGui import QImage, QPainter

from playground.engine.analysis.powerlaw import Fit
from playground.engine.presets import PRESETS
from playground.engine.training.scaling import LadderDone, RunResult
from playground.ui.controllers.scaling_control import ScalingController
from playground.ui.controllers.workers import WorkerPool
from playground.ui.views.log_axis import log_ticks
from playground.ui.views.scaling_panel import LONG_LADDER_S, ScalingPanel

from .conftest import use_tiny_settings


def _ladder(window, tokens_m: float):
    use_tiny_settings(window, steps=10)
    panel = window.scaling
    panel.sizes.setValue(3)
    panel.smallest.setValue(2_000)
    panel.largest.setValue(20_000)
    panel.mode.setCurrentIndex(panel.mode.findData("tokens"))
    panel.tokens.setValue(tokens_m)
    return panel


def test_a_ladder_of_three_trains_fits_and_exports(window, qtbot, tmp_path, monkeypatch):
    from playground.engine.data.download import DATA_ENV
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    panel = _ladder(window, 0.01)
    archived_before = len(window.plot.runs)
    with qtbot.waitSignal(window.scale_ctl.ladderDone, timeout=120_000) as done:
        assert panel.start()
        window.training.train.click()   # refused while the ladder trains, in words
        assert "scaling ladder is training" in window.last_error
    event = done.args[0]
    assert not event.stopped and len(event.runs) == 3 and event.fit is not None
    params = [r.params for r in panel.results]
    assert params == sorted(params) and len(set(params)) == 3
    assert 2_000 * 0.5 <= params[0] and params[-1] <= 20_000 * 2
    x, y = panel.points()
    assert len(x) == 3 and all(v > 0 for v in y)
    assert panel.fit_line is not None  # the fitted power law drawn through them
    assert "L(N) =" in panel.fit_label.text() and f"{event.fit.alpha:.3f}" in panel.fit_label.text()
    assert panel.table.rowCount() == 3 and panel.progress.value() == 3
    # every run trained on the loss plot: the first two stayed behind as earlier runs
    assert len(window.plot.runs) >= archived_before + 2
    out = tmp_path / "runs.csv"
    panel.export_csv(str(out))
    rows = list(csv.DictReader(out.open()))
    assert [int(r["params"]) for r in rows] == params and all(r["path"] for r in rows)
    panel.export_png(str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 1000
    # a run's model opens like any saved model
    panel._open_row(1, 0)
    assert window.current.value is not None and window.current.value.config.n_embd == panel.results[1].n_embd


def test_stop_mid_ladder_keeps_the_finished_runs(window, qtbot, tmp_path, monkeypatch):
    from playground.engine.data.download import DATA_ENV
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    panel = _ladder(window, 0.2)   # long enough that the second run is still training at Stop
    window.scale_ctl.runFinished.connect(lambda _event: window.scale_ctl.stop())
    with qtbot.waitSignal(window.scale_ctl.ladderDone, timeout=120_000) as done:
        assert panel.start()
    event = done.args[0]
    assert event.stopped and len(event.runs) == 1 and event.fit is None
    assert panel.table.rowCount() == 1 and "Stopped" in panel.eta.text()
    assert "at least three" in panel.fit_label.text()
    assert panel.run.isEnabled() and not window.scale_ctl.running


def test_training_and_a_ladder_never_run_at_once(window, qtbot):
    panel = _ladder(window, 0.01)
    use_tiny_settings(window, steps=100_000)
    window.training.train.click()
    qtbot.waitUntil(lambda: window.plot.point_count >= 2, timeout=60_000)
    assert not panel.start()
    assert "model is training" in panel.warning.text()
    with qtbot.waitSignal(window.trainingFinished, timeout=60_000):
        window.training.stop.click()


def test_the_frontier_marks_the_best_size_for_each_budget(window, qtbot, tmp_path, monkeypatch):
    from playground.engine.data.download import DATA_ENV
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    panel = _ladder(window, 0.01)
    panel.mode.setCurrentIndex(panel.mode.findData("frontier"))
    panel.flops.setText("2e8, 5e8")
    with qtbot.waitSignal(window.scale_ctl.ladderDone, timeout=120_000) as done:
        assert panel.start()
    event = done.args[0]
    assert len(event.frontier) == 2 and event.fit is None
    for budget_index, (budget, params, loss) in enumerate(event.frontier):
        runs = [r for r in panel.results if r.budget_index == budget_index]
        assert all(abs(r.flops - budget) / budget < 0.2 for r in runs)  # each run spent its budget
        assert loss == min(r.val_loss for r in runs) and params in [r.params for r in runs]
    assert "best size for each budget" in panel.fit_label.text()
    stars = [i for i in panel.plot.getPlotItem().listDataItems() if i.opts.get("symbol") == "star"]
    assert len(stars) == 2
    panel.flops.setText("3e12, lots")
    assert not panel.start() and "numbers like 3e12" in panel.warning.text()


# -- without training: the panel on its own controller -------------------------------------------
@pytest.fixture
def panel(qtbot):
    panel = ScalingPanel(ScalingController(WorkerPool()))
    qtbot.addWidget(panel)
    panel.resize(380, 640)  # the right dock of a 1280x720 window
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _result(index: int, params: int, loss: float, budget_index: int = 0) -> RunResult:
    return RunResult(index, params, 2, 1, 32, 100, 100_000, 6.0 * params * 1e5, 1.5, loss, 90,
                     ((50, loss + 0.1), (100, loss)), "ok", f"/tmp/run-{index}.safetensors", budget_index, index)


def test_long_messages_never_widen_the_panel(panel, qtbot):
    before = panel.minimumSizeHint().width(), panel.sizeHint().width()
    panel.control.out_dir = "/home/someone/.local/share/gpt-playground/" + "very-long-folder-name/" * 12
    panel._ladder_done(LadderDone((_result(0, 10_000, 1.2),), None, stopped=True))
    stopped = panel.eta.text()
    assert panel.minimumSizeHint().width() <= before[0] and panel.sizeHint().width() <= before[1]
    warning = "the loss does not fall with size: " + "no power law fits these runs " * 20
    fit = Fit(1.0, 2.0, 0.3, 0.95, 3, False, warning, 2_000_000, 1.1)
    panel._ladder_done(LadderDone(tuple(_result(i, 10_000 * 4 ** i, 1.5 - 0.1 * i) for i in range(3)), fit, False))
    panel.plan_label.setText("Cannot run the ladder yet: " + "a very long reason " * 30)
    assert panel.minimumSizeHint().width() <= before[0] and panel.sizeHint().width() <= before[1]
    assert stopped.startswith("Stopped: 1 run kept in /home/someone/")  # one run, not "1 runs"
    assert panel.warning.text() == warning and "(R² = 0.950, 3 runs)" in panel.fit_label.text()
    assert panel.eta.elided() and panel.eta.toolTip().endswith("very-long-folder-name/")  # the whole path, on hover


def test_the_default_ladder_is_short_and_starts_without_asking(window, monkeypatch):
    panel = window.scaling  # as the window opens: the seed preset on the phrase corpus
    seconds = panel.refresh_estimate()
    assert seconds is not None and seconds < 3 * 60  # "a minute or two" on the bench's 2-core CPU
    assert panel.plan_label.text().startswith("5 runs, about ")
    panel.sizes.setValue(6)  # every field change updates the estimate
    assert panel.plan_label.text().startswith("6 runs, about ") and panel.refresh_estimate() > seconds
    asked, started = [], []
    panel.confirm = lambda text: asked.append(text) or False
    monkeypatch.setattr(window.scale_ctl, "start", lambda **request: started.append(request) or True)
    assert panel.start() and not asked
    assert started[0]["sizes"] == 6 and started[0]["mode"] == "tokens" and started[0]["amount"] == 1e6


def test_a_long_ladder_asks_first_and_a_declined_one_does_not_start(window, monkeypatch):
    panel = window.scaling
    panel.sizes.setValue(12)
    panel.largest.setValue(50_000_000)
    panel.tokens.setValue(100)
    assert panel.refresh_estimate() > LONG_LADDER_S
    assert "12 runs, about " in panel.plan_label.text() and " h " in panel.plan_label.text()
    asked, started = [], []
    monkeypatch.setattr(window.scale_ctl, "start", lambda **request: started.append(request) or True)
    panel.confirm = lambda text: asked.append(text) or False
    assert not panel.start() and not started and len(asked) == 1 and "12 runs" in asked[0]
    assert panel.run.isEnabled()
    panel.confirm = lambda text: asked.append(text) or True
    assert panel.start() and len(started) == 1 and len(asked) == 2


def test_a_ladder_that_cannot_be_planned_says_why(panel):
    seed = PRESETS["seed"]
    panel.source = lambda: ("fox", "the quick brown fox " * 40, seed.model.replace(vocab_size=16), seed.train)
    panel.smallest.setValue(1_000_000)
    panel.largest.setValue(2_000_000)
    panel.sizes.setValue(12)
    assert panel.refresh_estimate() is None and "sizes" in panel.plan_label.text()
    assert not panel.start() and "sizes" in panel.warning.text() and not panel.control.running


def test_the_time_left_scales_the_plan_by_the_runs_so_far(panel):
    """The engine's guess scales by FLOPs, which the first, tiny runs (mostly fixed cost per
    step) inflate many times; the panel scales its own per-run estimates instead."""
    panel._run_estimates = [1.0, 2.0, 4.0]
    assert panel.seconds_left([_result(0, 5_000, 2.0)], engine_guess=500.0) == 1.5 / 1.0 * 6.0
    panel._run_estimates = []  # a ladder the panel did not plan: the engine's guess
    assert panel.seconds_left([_result(0, 5_000, 2.0)], engine_guess=500.0) == 500.0


def _drawn_labels(axis) -> list:
    """(rect, text) of every tick label the axis draws now."""
    image = QImage(10, 10, QImage.Format_ARGB32)
    painter = QPainter(image)
    specs = axis.generateDrawSpecs(painter)
    painter.end()
    return [(rect, text) for rect, _flags, text in specs[2]]


@pytest.mark.parametrize("width", [380, 900])
@pytest.mark.parametrize("params, losses", [([5e3, 2e4, 8e4, 3e5], [2.5, 2.0, 1.6, 1.3]),
                                             ([1e3, 3e4, 1e6, 3e7, 1e8], [3.0, 1.0, 0.3, 0.15, 0.1]),
                                             ([2e4, 3e4, 4e4], [1.92, 1.9, 1.89])])
def test_log_axis_labels_do_not_overlap(panel, qtbot, width, params, losses):
    panel.resize(width, 500)
    panel.results = [_result(i, int(p), loss) for i, (p, loss) in enumerate(zip(params, losses))]
    panel.redraw()
    item = panel.plot.getPlotItem()
    qtbot.waitUntil(lambda: panel.width() == width)
    item.getViewBox().autoRange()
    for name in ("bottom", "left"):
        labels = _drawn_labels(item.getAxis(name))
        assert len(labels) >= 2, (name, labels)
        for i, (rect, _text) in enumerate(labels):
            assert not any(rect.intersects(other) for other, _ in labels[:i]), (name, [t for _, t in labels])


def test_log_ticks_never_exceed_the_room():
    for low, high in [(0, 30), (3.3, 5.7), (-1.2, 0.6), (0.27, 0.29), (9.8, 13.2), (-3, 12)]:
        for room in range(2, 15):
            ticks = log_ticks(low, high, room)
            assert 1 <= len(ticks) <= room and all(low - 1e-9 <= t <= high + 1e-9 for t in ticks)
