"""Nothing a user made is lost, and the window tells the truth: Train starts a new model and
asks before replacing an unsaved one, Continue is its own labelled action, closing asks, the
progress bar and status line agree, the hints match the curve, and nothing long widens the
window."""

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog

from .conftest import use_tiny_settings


def settle(qtbot, window, rounds: int = 100):
    """Process events until the window's layout stops changing (three still looks in a row,
    10 ms apart; at most a second): a fixed wait is too short on a busy machine."""
    def shape():
        return (window.size(), window.minimumSizeHint(), window.plot.plot.size(),
                tuple(w.geometry() for w in (window.health.hint, window.health.lr_plot, window.health.grad_plot)))
    last, still = shape(), 0
    for _ in range(rounds):
        qtbot.wait(10)
        now = shape()
        still = still + 1 if now == last else 0
        if still >= 3:
            return
        last = now


def train(window, qtbot, continuing=False):
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        assert (window.continue_training() if continuing else window.start_training())


def test_train_after_a_change_starts_a_new_model_and_asks_first(window, qtbot):
    use_tiny_settings(window, steps=30)
    train(window, qtbot)
    first = window.current.value
    assert window.current.step == 30 and window.current.unsaved
    window.settings.lr.setValue(0.5)
    window.ask.answer = "cancel"
    assert not window.start_training()  # cancelled: nothing starts, the model stays
    assert window.current.value is first and not window.train_ctl.running
    question, detail = window.ask.questions[-1]
    assert "step 30" in question and "not saved" in question and "Training a new model" in detail
    window.ask.answer = "discard"
    train(window, qtbot)
    assert window.current.value is not first and window.current.step <= 30  # fresh weights, from 0
    assert window.plot.raw.x[0] == 1 and len(window.plot.runs) == 1  # the first run stays, faint
    assert window.plot.runs[0].name().startswith("run 1: 1x16") and "lr 0.01" in window.plot.runs[0].name()


def test_a_saved_model_is_replaced_without_a_question(window, qtbot, tmp_path):
    use_tiny_settings(window, steps=10)
    train(window, qtbot)
    assert window.save_model(str(tmp_path / "m.safetensors")) and not window.current.unsaved
    asked = len(window.ask.questions)
    train(window, qtbot)
    assert len(window.ask.questions) == asked


def test_continue_is_labelled_and_the_bar_agrees_with_the_status(window, qtbot):
    use_tiny_settings(window, steps=20, eval_interval=10)
    cont = window.training.resume_training
    assert not cont.isEnabled() and "no model to continue" in cont.toolTip()
    train(window, qtbot)
    window.settings.spins["steps"].setValue(25)
    window.settings.lr.setValue(0.02)
    assert cont.isEnabled() and cont.text() == "Continue +25"
    seen = []

    def check(_ev):  # every refresh of the line: the bar shows the same step out of the same end
        window.status.refresh()
        text, bar = window.training.status.text(), window.training.progress
        if text.startswith("step "):
            seen.append((text.split(" · ")[0], f"step {bar.value():,}/{bar.maximum():,}"))
    window.train_ctl.stepped.connect(check)
    train(window, qtbot, continuing=True)
    assert seen and all(a == b for a, b in seen), seen[:3]
    bar = window.training.progress
    assert (bar.minimum(), bar.maximum(), bar.value()) == (20, 45, 45)
    assert window.training.status.text().startswith("Finished at step 45")
    assert "then +25 at lr 0.02" in window.plot.legend.toolTip()
    assert not window.ask.questions  # continuing replaces nothing


def test_continue_says_why_not_when_the_settings_reshape_the_model(window, qtbot):
    use_tiny_settings(window, steps=10)
    train(window, qtbot)
    window.settings.spins["layers"].setValue(2)
    cont = window.training.resume_training
    assert not cont.isEnabled() and "layers 1 -> 2" in cont.toolTip() and "Train starts a new model" in cont.toolTip()
    window.continue_training()
    assert "Cannot continue" in window.last_error and not window.train_ctl.running


def test_closing_asks_and_cancel_keeps_the_window(window, qtbot):
    use_tiny_settings(window, steps=10)
    train(window, qtbot)
    window.ask.answer = "cancel"
    assert not window.close()
    assert window.isVisible() and window.current.value is not None
    assert "before closing" in window.ask.questions[-1][0]


def test_save_on_closing_during_training_stops_saves_then_closes(window, qtbot, tmp_path, monkeypatch):
    use_tiny_settings(window, steps=100_000)
    target = tmp_path / "kept.safetensors"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.start_training()
    qtbot.waitUntil(lambda: window.plot.point_count >= 3, timeout=60_000)
    window.ask.answer = "save"
    assert not window.close()  # not yet: the run stops first
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert target.exists() and "Training is running" in window.ask.questions[-1][1]
    from playground.engine.model import checkpoint
    assert checkpoint.load(str(target)).state["step"] >= 3


def test_save_says_there_is_no_model_before_asking_for_a_name(window, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert not window.ask_save_model()
    assert "no model to save" in window.last_error


def test_saving_names_the_optimizer_file_and_opening_restores_the_curve(window, qtbot, tmp_path):
    use_tiny_settings(window, steps=30, eval_interval=10)
    train(window, qtbot)
    steps, losses = (a.copy() for a in window.plot.raw.view())
    path = tmp_path / "m.safetensors"
    assert window.save_model(str(path))
    assert "m.optim.safetensors beside it" in window.training.status.text()
    assert window.reset_model() and window.plot.raw.n == 0
    assert window.open_model(str(path))
    got_steps, got_losses = window.plot.raw.view()
    assert list(got_steps) == list(steps) and abs(got_losses - losses).max() < 1e-5
    assert window.plot.val.n == 3


def test_a_new_run_does_not_show_the_last_runs_validation(window, qtbot):
    use_tiny_settings(window, steps=20, eval_interval=10)
    train(window, qtbot)
    assert window.status.val_loss is not None
    window.settings.spins["eval_interval"].setValue(1000)
    window.settings.spins["steps"].setValue(1000)
    window.start_training()
    qtbot.waitUntil(lambda: window.status.step_ev is not None and window.status.step_ev.step >= 2, timeout=60_000)
    window.status._dirty = True
    window.status.refresh()
    assert "val n/a" in window.training.status.text()
    with qtbot.waitSignal(window.trainingFinished, timeout=30_000):
        window.stop_running()


def test_perplexity_of_a_blown_up_loss_is_short_and_counts_are_plural():
    from playground.ui.views.status_line import ppl_text
    assert ppl_text(0.05) == "1.05" and ppl_text(8.0) == "2,981" and ppl_text(float("inf")) == "n/a"
    assert ppl_text(400.0) == ppl_text(699.0) == "over a million"
    from playground.engine.wording import plural
    assert (plural(1, "thread"), plural(2, "thread"), plural(1_000, "character")) == \
        ("1 thread", "2 threads", "1,000 characters")


def test_long_samples_and_many_runs_never_widen_or_shrink_the_layout(window, qtbot):
    window.resize(1280, 690)
    settle(qtbot, window)
    width, plot_height = window.minimumSizeHint().width(), window.plot.plot.height()
    window.samples.add(10, "x" * 3000)
    window.samples.add(20, "word " * 600)
    window.status.message("Stopped: " + "/very/long/path" * 80)
    for i in range(9):
        window.plot.add_step(1, 2.0)
        window.plot._label = f"{i + 1}x16, 2 heads, block 8, lr 0.01, 30 steps"
        window.plot.archive()
    settle(qtbot, window)
    assert window.minimumSizeHint().width() == width and window.width() == 1280
    assert window.plot.plot.height() == plot_height
    names = [c.name() for c in window.plot.runs]
    assert len(set(names)) == len(names) == 8  # each earlier run labelled apart
    assert window.training.status.elided() and window.samples.current.elided()


def test_the_health_hint_sits_beside_its_charts(window, qtbot):
    window.resize(1280, 690)
    window.docks["health"].raise_tab()
    health = window.health
    health.hint.setText("The loss blew up: " + "it is far above random guessing. " * 10)
    settle(qtbot, window)
    hint = health.hint.geometry()
    for chart in (health.lr_plot, health.grad_plot):
        assert not hint.intersects(chart.geometry())


def test_shortcuts_train_stop_and_generate_and_show_in_menus_and_tooltips(window, qtbot):
    use_tiny_settings(window, steps=100_000)
    actions = window.actions_by_name
    assert actions["trainAction"].shortcut() == QKeySequence("Ctrl+Return")
    assert QKeySequence("F5") in actions["trainAction"].shortcuts()
    assert actions["stopAction"].shortcut() == QKeySequence("Esc")
    assert actions["generateAction"].shortcut() == QKeySequence("Ctrl+G")
    assert "Ctrl+Enter" in window.training.train.toolTip() and "Esc" in window.training.stop.toolTip()
    assert "Ctrl+G" in window.generation.generate.toolTip()
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key_Return, Qt.ControlModifier)
    qtbot.waitUntil(lambda: window.plot.point_count >= 2, timeout=60_000)
    with qtbot.waitSignal(window.trainingFinished, timeout=30_000):
        qtbot.keyClick(window, Qt.Key_Escape)
    window.generation.length.setValue(5)
    with qtbot.waitSignal(window.generationFinished, timeout=30_000):
        qtbot.keyClick(window, Qt.Key_G, Qt.ControlModifier)
    assert len(window.generation.text()) == 5
    assert not window.training.train.isDefault()


def test_the_pace_counts_characters_not_tokens(qtbot):
    """25 characters a second whatever a token holds: a BPE token of three characters is
    written a third as often as a character token (the pace used to run 2.5x fast with BPE)."""
    from PySide6.QtWidgets import QPlainTextEdit

    from playground.ui.views.typewriter import TICK_MS, Typewriter

    class Clock:  # each tick is exactly one TICK_MS later: counts, not wall time
        def restart(self):
            return TICK_MS

        def start(self):
            pass
    written = {}
    for size in (1, 3):
        box = QPlainTextEdit()
        qtbot.addWidget(box)
        writer = Typewriter(box)
        writer.begin("")
        writer.timer.stop()
        writer._clock = Clock()
        writer.pace = 25
        for _ in range(200):
            writer.push(("abc"[:size], 0.9, [], "x"))
        for _ in range(50):  # two seconds of ticks
            writer.flush()
        written[size] = len(box.toPlainText())
    assert 45 <= written[1] <= 51 and 45 <= written[3] <= 51  # 25 characters a second, for 2 s


def test_a_run_without_validation_says_so(window):
    from playground.engine.events import Started, Step
    window.status.started(Started(1000, 300, 40, 0, 0, 100, 1, tokenizer="bpe"))
    window.status.step(Step(3, 2.0, 1e-3, 0.5, False, 100.0, 1.0))
    window.status.refresh()
    text = window.training.status.text()
    assert "no validation (text too short)" in text and "val n/a" not in text


def test_a_run_that_averages_its_weights_says_so(window, phrase_corpus, tiny_model_cfg, tiny_train_cfg):
    from playground.engine.events import Step
    from playground.engine.training.trainer import Trainer
    started = next(iter(Trainer(tiny_model_cfg, tiny_train_cfg.replace(ema=0.99), phrase_corpus).run()))
    assert started.message == ("evaluations score a moving average of the weights (0.99 carried over each "
                               "step), which the run ends with")
    window.status.started(started)
    assert window.training.status.text().endswith(f"thread; {started.message}")
    window.status.step(Step(3, 2.0, 1e-3, 0.5, False, 100.0, 1.0))   # the line during the run
    window.status.refresh()
    assert "· val n/a (weight average) ·" in window.training.status.text()


def test_the_first_layout_gives_the_forms_their_room(window, qtbot):
    window.resize(1272, 680)
    window.share_out()
    settle(qtbot, window)
    from PySide6.QtWidgets import QScrollArea
    settings = window.docks["settings"]
    assert settings.width() >= window.settings.sizeHint().width()
    area = window.settings.parentWidget().parentWidget()  # the scroll area around the form
    assert isinstance(area, QScrollArea)
    assert not area.verticalScrollBar().isVisible(), "the settings form should not scroll at 1280x720"


def test_shortcuts_stay_live_after_the_run_menu_was_opened_during_a_run(window, qtbot):
    use_tiny_settings(window, steps=100_000)
    window.start_training()
    qtbot.waitUntil(lambda: window.plot.point_count >= 2 and window.train_ctl.running, timeout=60_000)
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    run_menu.aboutToShow.emit()  # opened while training: Train greyed, as its button is
    assert not window.actions_by_name["trainAction"].isEnabled()
    run_menu.aboutToHide.emit()
    with qtbot.waitSignal(window.trainingFinished, timeout=30_000):
        window.actions_by_name["stopAction"].trigger()
    window.settings.spins["steps"].setValue(5)
    with qtbot.waitSignal(window.trainingFinished, timeout=60_000):
        window.actions_by_name["trainAction"].trigger()  # F5 / Ctrl+Enter after the run: it trains
    assert window.current.step == 5


def test_the_bar_reads_the_models_steps_when_continuing(window, qtbot):
    use_tiny_settings(window, steps=20, eval_interval=10)
    train(window, qtbot)
    window.settings.spins["steps"].setValue(25)
    texts = []
    window.train_ctl.stepped.connect(lambda ev: texts.append(window.training.progress.text()))
    train(window, qtbot, continuing=True)
    assert texts and all(t.endswith(" / 45 steps") for t in texts)
    assert window.training.progress.text() == "45 / 45 steps"


def test_a_ladder_on_the_plot_does_not_become_the_models_saved_curve(window, qtbot, tmp_path):
    from playground.engine.events import Done, Started, Step
    use_tiny_settings(window, steps=30, eval_interval=10)
    train(window, qtbot)
    steps = list(window.plot.raw.x[: window.plot.raw.n])
    ladder = window.scale_ctl  # a ladder's run drawn on the plot, as the Scaling tab does
    ladder._label = "scale run 1: 5,000 parameters"
    ladder.started.emit(Started(5000, 27, 800, 80, 0, 12, 1))
    for i in range(1, 13):
        ladder.stepped.emit(Step(i, 3.0 - i / 10, 1e-3, 0.5, False, 100.0, i / 10))
    ladder.ended.emit(Done("completed", 12, 5000, 1.8, None, 1.2, 3000))
    assert window.plot.raw.n == 12  # the ladder's run is what the plot shows now
    path = tmp_path / "m.safetensors"
    assert window.save_model(str(path))
    from playground.engine.model import checkpoint
    assert checkpoint.load(str(path)).state["history"]["steps"] == [int(s) for s in steps]


def test_train_waits_for_a_corpus_that_is_still_loading(window, qtbot, server, monkeypatch):
    from playground.engine.data import download
    from tests.fileserver import source
    use_tiny_settings(window)
    monkeypatch.setitem(download.SOURCES, "alice", source(server + "/slow", "alice"))
    window.corpus.select("alice")
    assert not window.training.train.isEnabled() and "still loading" in window.training.train.toolTip()
    assert not window.start_training() and not window.train_ctl.running
    qtbot.waitUntil(lambda: window.corpus.choice() == "alice" and not window.corpus.loading(), timeout=30_000)
    assert window.training.train.isEnabled()


def test_the_ladder_stops_saying_loading_when_a_corpus_download_fails(window, qtbot, server, monkeypatch):
    """Seen in a real window offline: the Scaling tab kept "still loading" after the download
    had failed (it followed the settings, not the corpus). It follows the corpus too."""
    from playground.engine.data import download
    from tests.fileserver import source
    window.docks["scaling"].show()
    window.docks["scaling"].raise_()
    qtbot.waitUntil(window.scaling.isVisible, timeout=5_000)
    monkeypatch.setitem(download.SOURCES, "alice", source(server + "/missing", "alice"))
    window.corpus.select("alice")
    window.settings.spins["steps"].setValue(window.settings.value("steps") + 1)  # while it loads
    assert "still loading" in window.scaling.plan_label.text()
    qtbot.waitUntil(lambda: not window.corpus.loading(), timeout=30_000)
    assert "still loading" not in window.scaling.plan_label.text()
    assert "runs" in window.scaling.plan_label.text()  # the ladder is planned on the text kept


def test_save_is_named_after_the_model_and_continue_knows_its_characters(window, qtbot, monkeypatch):
    use_tiny_settings(window, steps=10)
    train(window, qtbot)
    window.settings.spins["layers"].setValue(3)  # the fields say something else now
    offered = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda parent, title, path, kinds: (offered.append(path), ("", ""))[1])
    assert not window.ask_save_model()
    assert offered and "-1x16-step10" in offered[0]
    window.settings.spins["layers"].setValue(1)
    window.corpus.set_custom_text("ZZZ QQQ " * 40)  # characters the model never saw
    cont = window.training.resume_training
    assert not cont.isEnabled() and "'Q'" in cont.toolTip() and "never saw" in cont.toolTip()


def test_the_sweep_tab_runs_the_sweep_itself(window, qtbot):
    use_tiny_settings(window, steps=10)
    train(window, qtbot)
    window.generation.length.setValue(12)
    with qtbot.waitSignal(window.gen_ctl.sweepEnded, timeout=60_000):
        window.sweep.run.click()
    assert all(len(text) >= 12 for text in window.sweep.texts())
