"""A newcomer's first ten minutes: the window fits a laptop screen, panels come back from the
View menu, the best weights are marked and kept, overfitting is named, a corpus downloads (or
says why not), and generation can be watched at a pace or one character at a time."""

import pytest
from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtWidgets import QAbstractScrollArea, QTabBar, QWidget

from playground.engine.data import download
from tests.fileserver import BODY, source

from .conftest import use_tiny_settings

SMALL_SCREENS = [(1280, 720), (1366, 768)]
MUST_BE_REACHABLE = ["promptEdit", "generateButton", "outputView", "nextCharButton", "trainButton",
                     "lossPlot", "corpusPicker", "layersSpin", "stepsSpin", "samplesView"]
OVERFIT_TEXT = "abc" * 300 + "acb" * 40  # trains on abc, validates on acb: it must overfit


def visible_in(window, widget: QWidget) -> bool:
    """Shown, not zero-sized, and wholly inside the window (not clipped at its edge)."""
    if not widget.isVisible() or widget.width() < 10 or widget.height() < 10:
        return False
    seen = widget.viewport() if isinstance(widget, QAbstractScrollArea) else widget
    if seen.visibleRegion().isEmpty():  # covered by another widget
        return False
    return window.rect().contains(QRect(widget.mapTo(window, QPoint(0, 0)), widget.size()))


@pytest.mark.parametrize("size", SMALL_SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_panel_a_newcomer_needs_fits_a_small_screen(window, qtbot, size):
    window.resize(*size)
    qtbot.waitUntil(lambda: window.size() == QSize(*size), timeout=5000)
    for name in MUST_BE_REACHABLE:
        widget = window.findChild(QWidget, name)
        assert visible_in(window, widget), (name, widget.geometry(), window.size())
    assert window.minimumSizeHint().width() <= size[0] and window.minimumSizeHint().height() <= size[1]


def test_the_view_menu_brings_closed_panels_back(window, qtbot):
    generate = window.docks["generate"]
    generate.close()
    assert not generate.isVisible()
    generate.toggleViewAction().trigger()
    assert generate.isVisible()
    window.docks["attention"].setFloating(True)
    window.docks["sweep"].close()
    window.reset_layout()
    assert not window.docks["attention"].isFloating() and window.docks["sweep"].isVisibleTo(window)


def test_each_group_of_tabbed_panels_shows_one_tab_bar(window, qtbot):
    """Qt left the first bar of the bottom group ("Samples | Health", from tabifying the panels
    one by one) shown over the settings panel's edge, beside the group's whole bar; after the
    window opens and after Reset layout, each group shows one bar with all of its tabs."""
    def shown() -> list[list[str]]:
        return sorted([bar.tabText(i) for i in range(bar.count())] for bar in window.findChildren(QTabBar)
                      if bar.parentWidget() is window and bar.isVisible())
    whole = [["Generate", "Attention", "Scaling", "Preferences"], ["Samples", "Health", "Sweep", "Serve", "Inside"]]
    qtbot.waitUntil(lambda: len(shown()) >= 2, timeout=5000)
    assert shown() == whole
    window.reset_layout()
    qtbot.wait(50)
    assert shown() == whole


def test_the_layout_is_remembered(qtbot, tmp_path, monkeypatch):
    from playground.ui.main_window import SETTINGS_ENV, MainWindow
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "layout.ini"))
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.docks["health"].close()
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert not second.docks["health"].isVisible() and second.docks["samples"].isVisible()


def test_the_best_weights_are_marked_kept_and_overfitting_is_named(window, qtbot):
    use_tiny_settings(window, steps=120, text=OVERFIT_TEXT, eval_interval=10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    plot, health = window.plot, window.health
    steps, losses = plot.val.view()
    best = int(steps[losses.argmin()])
    assert plot.best[0] == best < 120 and "best: step" in plot.legend.text()
    assert list(plot.best_point.getData()[0]) == [best]
    assert window.current.step == best  # the model in hand is the best one
    assert f"Kept step {best}, where validation was lowest" in window.training.status.text()
    assert window.training.status.text().startswith("Finished at step 120")
    assert health.hint.text().startswith("Overfitting") and "more text" in health.hint.text()
    # training on goes on from the kept weights: the plot drops the points after them
    window.settings.spins["steps"].setValue(10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    assert plot.raw.x[plot.raw.n - 1] <= best + 10 and list(plot.raw.x[: plot.raw.n]) == sorted(plot.raw.x[: plot.raw.n])


def test_a_corpus_downloads_in_the_window(window, qtbot, server, monkeypatch):
    monkeypatch.setitem(download.SOURCES, "alice", source(server + "/ok", "alice"))
    picker = window.corpus.picker
    picker.setItemText(picker.findData("alice"), window.corpus._source_label("alice"))
    assert "downloads once" in picker.itemText(picker.findData("alice"))
    window.corpus.select("alice")
    assert window.corpus.progress.isVisible() and window.corpus.cancel.isVisible()
    qtbot.waitUntil(lambda: window.corpus.text() == BODY.decode(), timeout=30_000)
    assert window.corpus.choice() == "alice" and not window.corpus.progress.isVisible()
    assert "downloads once" not in picker.itemText(picker.findData("alice"))
    assert window.training.train.isEnabled()


@pytest.mark.parametrize("path,words", [("/slow", "Cancelled"), ("/missing", "HTTP 404")])
def test_a_cancelled_or_failed_download_keeps_the_corpus(window, qtbot, server, monkeypatch, path, words):
    use_tiny_settings(window)
    before = window.corpus.text()
    monkeypatch.setitem(download.SOURCES, "sherlock", source(server + path, "sherlock"))
    window.corpus.select("sherlock")
    if path == "/slow":
        qtbot.waitUntil(lambda: window.corpus.progress.value() > 0, timeout=10_000)
        window.corpus.cancel.click()
    qtbot.waitUntil(lambda: not window.corpus.progress.isVisible(), timeout=30_000)
    assert words in window.corpus.notice.text()
    assert window.corpus.text() == before and window.corpus.choice() == "custom"
    assert download.cached(download.SOURCES["sherlock"]) is None


@pytest.fixture
def trained(window, qtbot):
    use_tiny_settings(window, steps=30)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    return window


def test_generation_keeps_a_readable_pace(trained, qtbot):
    panel = trained.generation
    panel.pace.setValue(50)  # two characters a tick of 40 ms, at most four on a late tick
    writes = []
    panel.typewriter.shown.connect(lambda position, token: writes.append(position))
    panel.length.setValue(20)
    panel.prompt.setText("the ")
    with qtbot.waitSignal(trained.generationFinished, timeout=30_000):
        panel.generate.click()
    sizes = [b - a for a, b in zip([3] + writes, writes)]
    assert len(panel.text()) == 24 and sum(sizes) == 20
    assert len(sizes) >= 5 and max(sizes) <= 4


def test_step_mode_shows_the_odds_then_draws_one_character(trained, qtbot):
    panel = trained.generation
    panel.prompt.setText("the ")
    vocab = trained.current.tokenizer.vocab_size
    for n in range(1, 4):
        with qtbot.waitSignal(panel.stepped, timeout=30_000):
            panel.next_char.click()
            qtbot.waitUntil(lambda: "drawing" in panel.odds.title.text(), timeout=30_000)
            assert panel.odds.candidates.count() == vocab  # every candidate, before the draw
        assert len(panel.text()) == 4 + n and panel.text().startswith("the ")
        assert panel.odds.title.text().startswith(f"Position {3 + n}: drew")


def test_serve_this_model_answers_http_then_stops(trained, qtbot):
    import http.client
    import json
    panel = trained.serve
    panel.port.setValue(0)  # any free port, on 127.0.0.1
    panel.toggle.click()
    assert panel.toggle.isChecked() and panel.url.startswith("http://127.0.0.1:")
    assert "curl " + panel.url in panel.examples.toPlainText() and "OpenAI(base_url" in panel.examples.toPlainText()
    port = int(panel.url.split(":")[2].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/completions", json.dumps({"model": "playground", "prompt": "the ",
                                                        "max_tokens": 12, "temperature": 0}),
                 {"Content-Type": "application/json"})
    reply = json.loads(conn.getresponse().read())
    assert len(reply["choices"][0]["text"]) == 12
    panel.toggle.click()
    assert not panel.toggle.isChecked() and panel.status.text() == "Not serving"
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/health")
