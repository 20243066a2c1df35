"""The Scaling tab: a ladder of three tiny models trains end to end in the window (each run on
the loss plot as it trains), the plot holds three points and a fitted line, results export, a
run opens like a saved model, and Stop mid-ladder keeps the finished runs."""

import csv

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
    from playground.engine.download import DATA_ENV
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
    from playground.engine.download import DATA_ENV
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
    from playground.engine.download import DATA_ENV
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
