"""The window as a user drives it: train, watch, generate, stop, pause, save, open, close."""

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from playground.engine.config import ModelConfig
from playground.engine.model.gpt import GPT

from .conftest import CORPUS, use_tiny_settings

NAMES = ["corpusPicker", "corpusEdit", "presetPicker", "layersSpin", "headsSpin", "widthSpin",
         "blockSpin", "batchSpin", "stepsSpin", "lrSpin", "paramCountLabel", "trainButton",
         "pauseButton", "stopButton", "resetButton", "trainProgress", "lossPlot", "samplesView",
         "promptEdit", "temperatureSlider", "topKSpin", "lengthSpin", "generateButton", "outputView"]


def find(win, name):
    from PySide6.QtWidgets import QWidget
    widget = win.findChild(QWidget, name)
    assert widget is not None, name
    return widget


def test_every_named_widget_exists_with_an_accessible_name_and_tooltip(window):
    for name in NAMES:
        widget = find(window, name)
        assert widget.accessibleName() and widget.toolTip(), name
    assert isinstance(find(window, "lossPlot"), pg.PlotWidget)


def test_whole_flow_train_then_generate(window, qtbot):
    use_tiny_settings(window, steps=60)
    assert window.training.train.isEnabled()
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        qtbot.mouseClick(find(window, "trainButton"), Qt.LeftButton)
    assert window.plot.point_count == 60
    steps, losses = window.plot.raw.view()
    assert list(steps) == list(range(1, 61)) and losses[-10:].mean() < losses[:10].mean()
    assert window.plot.val.n == 3  # evaluations at 20, 40, 60
    assert window.samples.count() == 3 and "step" in window.samples.view.item(0).text()
    assert find(window, "trainProgress").value() == 60
    assert "Finished at step 60" in window.training.status.text()
    window.generation.prompt.setText("the ")
    window.generation.length.setValue(600)
    with qtbot.waitSignal(window.generationFinished, timeout=60_000):
        qtbot.mouseClick(find(window, "generateButton"), Qt.LeftButton)
    out = find(window, "outputView").toPlainText()
    assert out.startswith("the ") and len(out) == 4 + 600
    assert window.generation.flushes >= 2, "the output should grow in several increments"
    assert set(out) <= set(CORPUS)


def test_stop_mid_run(window, qtbot):
    use_tiny_settings(window, steps=100_000)
    window.training.train.click()
    qtbot.waitUntil(lambda: window.plot.point_count >= 5, timeout=60_000)
    assert window.training.stop.isEnabled() and not window.training.train.isEnabled()
    with qtbot.waitSignal(window.trainingFinished, timeout=10_000):
        qtbot.mouseClick(window.training.stop, Qt.LeftButton)
    assert "Stopped at step" in window.training.status.text()
    assert 5 <= window.current.step < 100_000
    assert window.training.train.isEnabled() and not window.training.stop.isEnabled()


def test_pause_then_resume(window, qtbot):
    use_tiny_settings(window, steps=100_000)
    window.training.train.click()
    qtbot.waitUntil(lambda: window.plot.point_count >= 3, timeout=60_000)
    window.training.pause.click()
    assert window.training.pause.text() == "Resume"
    control = window.train_ctl._job.control
    assert control.wait_parked(10), "the run never stopped for the pause"
    held = window.current.step
    qtbot.waitUntil(lambda: window.plot.point_count == held, timeout=10_000)  # all steps shown
    assert control.parked and window.current.step == held
    assert window.training.status.text().startswith("Paused")
    window.training.pause.click()
    assert window.training.pause.text() == "Pause"
    qtbot.waitUntil(lambda: window.current.step >= held + 5, timeout=10_000)
    with qtbot.waitSignal(window.trainingFinished, timeout=10_000):
        window.training.stop.click()


def test_close_during_training_and_generation_exits_cleanly(window, qtbot):
    use_tiny_settings(window, steps=100_000)
    window.training.train.click()
    qtbot.waitUntil(lambda: window.plot.point_count >= 3, timeout=60_000)
    window.generation.length.setValue(100_000)
    window.generation.generate.click()
    qtbot.waitUntil(lambda: len(window.generation.typewriter.pending) + window.generation.flushes > 0, timeout=10_000)
    window.close()
    handles = window.workers.handles  # both workers, not yet cleaned up by the event loop
    assert len(handles) == 2 and all(h.thread.isFinished() for h in handles)


def test_invalid_settings_disable_train_with_a_message(window):
    use_tiny_settings(window)
    find(window, "widthSpin").setValue(100)
    find(window, "headsSpin").setValue(3)
    assert not window.training.train.isEnabled()
    assert "width 100 must be divisible by heads 3" in window.training.train.toolTip()
    problem = window.findChild(QLabel, "settingsProblem")
    assert problem.isVisible() and "divisible" in problem.text()
    find(window, "headsSpin").setValue(4)
    assert window.training.train.isEnabled()


def test_corpus_problems_disable_train(window):
    window.corpus.select("custom")
    for text, words in [("", "empty"), ("    ", "whitespace"), ("zzzz", "one distinct"),
                        ("short text", "block size")]:
        window.corpus.edit.setPlainText(text)
        window.corpus._debounce.timeout.emit()
        assert not window.training.train.isEnabled(), text
        assert words in window.training.train.toolTip(), (text, window.training.train.toolTip())


def test_parameter_label_matches_the_engine(window):
    use_tiny_settings(window)
    for layers, width, heads in [(1, 16, 2), (3, 48, 4), (2, 64, 4)]:
        find(window, "layersSpin").setValue(layers)
        find(window, "widthSpin").setValue(width)
        find(window, "headsSpin").setValue(heads)
        vocab = len(set(CORPUS))
        expected = GPT(ModelConfig(vocab_size=vocab, n_layer=layers, n_head=heads, n_embd=width,
                                   block_size=8)).num_params()
        assert find(window, "paramCountLabel").text() == f"{expected:,} parameters"


def test_seed_preset_shows_103821_parameters(window):
    window.settings.apply_preset("seed")
    window.corpus.select("phrase")
    assert find(window, "paramCountLabel").text() == "103,821 parameters"


def test_time_estimate_counts_the_merged_windows_of_a_tiny_text(window):
    """The phrase once has 7 windows for a batch of 32: a step computes 7 rows, not 32; the
    phrase repeated has 40 different windows wherever they start, so about 23 rows."""
    import re
    window.settings.apply_preset("seed")

    def ms_per_step():
        return float(re.search(r"~(\d+) ms per step", find(window, "estimateLabel").text()).group(1))
    window.corpus.set_custom_text("to be or not to be that is the question")
    tiny_text = ms_per_step()
    window.corpus.select("phrase")
    repeated = ms_per_step()
    window.corpus.select("fable")  # 1,775 characters: every window in a batch is distinct
    long_text = ms_per_step()
    assert 1 <= tiny_text < long_text / 2 and tiny_text < repeated < long_text


def test_the_estimate_follows_this_machines_measured_speed(window):
    """Once the warm-up thread has measured the machine (app.py), the window's estimate is
    recomputed at that speed: a machine four times as fast shows a much shorter step."""
    import re

    from playground.engine.training import estimate as est
    from playground.ui import app
    window.settings.apply_preset("shakespeare-2min")

    def ms_per_step():
        return float(re.search(r"~(\d+) ms per step", find(window, "estimateLabel").text()).group(1))
    try:
        est.calibrate(100e9)
        window.machineMeasured.emit()
        slow = ms_per_step()
        est.calibrate(400e9)
        window.machineMeasured.emit()
        fast = ms_per_step()
        assert fast < slow * 0.6
        # only the estimates change: an error on show stays (the settings did not change)
        window.status.message("Could not open model.pt: not a checkpoint", error=True)
        window.machineMeasured.emit()
        assert "not a checkpoint" in window.status.panel.status.text()
        emitted = []
        app._warm_up_torch(lambda: emitted.append(est._peak))  # loads torch, measures, tells the window
        assert emitted and 1e9 < emitted[0] < 1e14
    finally:
        est.forget_calibration()


def test_closing_the_app_while_it_measures_the_machine_exits_cleanly(tmp_path):
    """The app, closed 20 ms after it appears (the warm-up thread still measuring the machine
    in torch), returns 0: it waits for the measurement instead of shutting Python down under it,
    which aborted the process (exit 134)."""
    import os
    import subprocess
    import sys
    script = tmp_path / "close_soon.py"
    script.write_text(
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from playground.ui.main_window import MainWindow\n"
        "shown = MainWindow.show\n"
        "def show(self):\n"
        "    shown(self)\n"
        "    QTimer.singleShot(20, self.close)\n"
        "MainWindow.show = show\n"
        "from playground.ui import app\n"
        "code = app.main(['playground'])\n"
        "print('main returned', code, flush=True)\n"
        "sys.exit(code)\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PLAYGROUND_SETTINGS_FILE": str(tmp_path / "settings.ini")}
    env.pop("PLAYGROUND_STARTUP_PROBE", None)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "main returned 0" in out.stdout, (out.returncode, out.stderr[-800:])


def test_save_then_open_gives_the_same_generation(window, qtbot, tmp_path):
    use_tiny_settings(window, steps=30)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()

    def generate():
        window.generation.prompt.setText("the")
        window.generation.length.setValue(80)
        window.generation.seed.setValue(7)
        with qtbot.waitSignal(window.generationFinished, timeout=60_000):
            window.generation.generate.click()
        return window.generation.text()

    before = generate()
    path = tmp_path / "model.safetensors"
    assert window.save_model(str(path)) and path.exists()
    window.reset_model()
    assert window.current.value is None
    assert window.open_model(str(path))
    assert window.settings.value("width") == 16 and window.settings.value("layers") == 1
    assert generate() == before


def test_opening_a_bad_file_shows_a_message_and_keeps_the_model(window, qtbot, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    assert not window.open_model(str(bad))
    assert "Could not open the model" in window.last_error and "bad.safetensors" in window.last_error


def test_generate_while_training_uses_a_snapshot(window, qtbot):
    use_tiny_settings(window, steps=100_000)
    window.training.train.click()
    qtbot.waitUntil(lambda: window.plot.point_count >= 3, timeout=60_000)
    window.generation.length.setValue(50)
    with qtbot.waitSignal(window.generationFinished, timeout=30_000):
        window.generation.generate.click()
    assert len(window.generation.text()) == 50
    assert window.train_ctl.running
    with qtbot.waitSignal(window.trainingFinished, timeout=10_000):
        window.training.stop.click()


def test_unknown_prompt_characters_are_flagged_not_fatal(window, qtbot):
    use_tiny_settings(window, steps=10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    window.generation.prompt.setText("the QX")
    notice = window.findChild(QLabel, "promptNotice")
    assert notice.isVisible() and "'Q'" in notice.text() and "'X'" in notice.text()
    window.generation.length.setValue(10)
    with qtbot.waitSignal(window.generationFinished, timeout=30_000):
        window.generation.generate.click()
    assert window.generation.text().startswith("the ") and len(window.generation.text()) == 14


def test_generate_without_a_model_explains(window):
    window.generation.generate.click()
    assert "no model yet" in window.last_error


def test_plot_reference_line_export_and_log_toggle(window, qtbot, tmp_path):
    use_tiny_settings(window, steps=20, eval_interval=10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    vocab = len(set(CORPUS))
    assert math.isclose(window.plot.guess_line.value(), math.log(vocab))
    window.plot.log_y.setChecked(True)
    assert math.isclose(window.plot.guess_line.value(), math.log10(math.log(vocab)))
    window.plot.export_png(str(tmp_path / "loss.png"))
    window.plot.export_csv(str(tmp_path / "loss.csv"))
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    rows = (tmp_path / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,smoothed_loss,val_loss" and len(rows) == 21
    assert rows[10].split(",")[3] != "" and rows[9].split(",")[3] == ""


def test_settings_are_remembered(qtbot, tmp_path, monkeypatch):
    from playground.ui.main_window import SETTINGS_ENV, MainWindow
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "remember.ini"))
    first = MainWindow()
    qtbot.addWidget(first)
    use_tiny_settings(first, steps=77)
    first.corpus.edit.setPlainText("my own corpus text, long enough to use")  # typed by the user
    qtbot.waitUntil(lambda: first.corpus.text() == "my own corpus text, long enough to use")
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    assert second.settings.value("steps") == 77 and second.settings.value("width") == 16
    assert second.corpus.choice() == "custom"
    assert second.corpus.text() == "my own corpus text, long enough to use"


def test_signal_handlers_keep_reference_counts(window):
    """PySide6 6.12.0 drops a reference of False on each call of a lambda slot, and Python
    aborts after a few hundred; the window's handlers must not be affected (long runs). The
    count can only be read where False is mortal (before Python 3.12, which the project
    supports); on every version, each handler of a per-step signal must be a bound @Slot
    method of its own class, which that bug spares."""
    import sys

    from playground.engine.events import Eval, Sample, Step
    control = window.train_ctl
    before = sys.getrefcount(False)
    for i in range(1, 2001):
        control.stepped.emit(Step(i, 1.0, 1e-3, 0.5, False, 1000.0, i / 100))
        if i % 100 == 0:
            control.evaluated.emit(Eval(i, 1.0, 1.1, i / 100))
            control.sampled.emit(Sample(i, "text"))
    if sys.version_info < (3, 12):  # from 3.12 False is immortal: its count never moves
        assert abs(sys.getrefcount(False) - before) < 50
    handlers = per_step_handlers()
    assert len(handlers) >= 6  # the plot, health, samples, status, tasks, attention
    assert [h for h in handlers if not h[-1]] == []


def per_step_handlers() -> list[tuple[str, str, str, bool]]:
    """(file, signal, handler, whether it is a bound @Slot method of the same class) for every
    connection of a stepped/evaluated/sampled signal in the window's code."""
    import ast
    from pathlib import Path

    import playground.ui
    found = []
    for path in sorted(Path(playground.ui.__file__).parent.rglob("*.py")):
        for cls in (n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.ClassDef)):
            slots = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)
                     and any("Slot" in ast.unparse(d) for d in f.decorator_list)}
            for call in ast.walk(cls):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "connect"
                        and isinstance(call.func.value, ast.Attribute)
                        and call.func.value.attr in ("stepped", "evaluated", "sampled")):
                    arg = call.args[0]
                    bound = (isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name)
                             and arg.value.id == "self" and arg.attr in slots)
                    found.append((path.name, call.func.value.attr, ast.unparse(arg), bound))
    return found
