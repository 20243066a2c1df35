"""The window under stress: random clicks in any order, failed saves, diverging runs, big files."""

import random

import pytest
import torch
from PySide6.QtWidgets import QLabel

from .conftest import use_tiny_settings


@pytest.fixture
def saved_model(window, qtbot, tmp_path):
    use_tiny_settings(window, steps=10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    path = tmp_path / "m.safetensors"
    assert window.save_model(str(path))
    return path


def test_random_clicks_during_training_and_generation_never_crash_or_leak(window, qtbot, saved_model):
    rng = random.Random(20261124)
    use_tiny_settings(window, steps=100_000)
    window.generation.length.setValue(2000)
    actions = {
        "train": lambda: window.training.train.click(),
        "stop": lambda: window.training.stop.click(),
        "pause": lambda: window.training.pause.click(),
        "reset": lambda: window.training.reset.click(),
        "generate": lambda: window.generation.generate.click(),
        "stop generating": lambda: window.generation.stop.click(),
        "open": lambda: window.open_model(str(saved_model)),
        "save": lambda: window.save_model(str(saved_model)),
    }
    names = list(actions)
    history = []
    for _ in range(70):
        name = rng.choice(names)
        history.append(name)
        actions[name]()
        qtbot.wait(rng.randint(0, 60))
    # whatever state it is in, the window still trains and generates afterwards
    window.training.stop.click()
    window.generation.stop.click()
    qtbot.waitUntil(lambda: not window.train_ctl.running and not window.gen_ctl.generating, timeout=15_000)
    use_tiny_settings(window, steps=5)
    with qtbot.waitSignal(window.trainingFinished, timeout=60_000):
        window.training.train.click()
    window.close()
    assert all(h.thread.isFinished() for h in window.workers.handles), history


def test_a_failed_save_reports_and_keeps_the_model(window, qtbot, saved_model, monkeypatch):
    before = saved_model.read_bytes()
    import tempfile

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    assert not window.save_model(str(saved_model))
    assert "not saved" in window.last_error and "No space left" in window.last_error
    assert saved_model.read_bytes() == before
    monkeypatch.undo()
    window.generation.length.setValue(20)
    with qtbot.waitSignal(window.generationFinished, timeout=30_000):
        window.generation.generate.click()
    assert len(window.generation.text()) == 20  # the model in memory is still there


def test_a_diverging_run_stops_with_a_message_and_good_weights(window, qtbot):
    use_tiny_settings(window, steps=100_000)

    def sabotage(ev):
        if ev.step == 5:  # from now on each update leaves an infinite weight, as too high a rate can
            trainer = window.current.value.trainer
            optimizer = trainer.optimizers[0][0]
            update = optimizer.step

            def broken_update():  # runs in the training thread, inside its step
                update()
                with torch.no_grad():
                    trainer.model.lm_head.bias.fill_(float("inf"))
            optimizer.step = broken_update
    window.train_ctl.stepped.connect(sabotage)
    with qtbot.waitSignal(window.trainingFinished, timeout=60_000):
        window.training.train.click()
    status = window.training.status.text()
    assert status.startswith("Diverged") and "learning rate" in status
    weights = window.current.value.trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_the_status_line_reads_an_infinite_loss(window):
    """perplexity() is None for an infinite loss: the line says n/a instead of raising."""
    from playground.engine.events import Eval, Started, Step
    status = window.status
    status.started(Started(10, 13, 39, 0, 0, 10, 1))
    status.step(Step(3, float("inf"), 1e-3, float("nan"), False, 100.0, 1.0))
    status.evaluated(Eval(3, float("inf"), float("inf"), 1.0))
    status.refresh()
    text = window.training.status.text()
    assert "step 3/10" in text and "ppl n/a" in text and "loss inf" in text


def test_a_big_file_loads_off_the_gui_thread_with_progress(window, qtbot, tmp_path):
    big = tmp_path / "big.txt"
    line = "All the world's a stage, and all the men and women merely players.\n"
    big.write_text(line * 300_000)  # about 20 MB
    window.corpus.load_file(str(big))
    assert window.corpus.progress.isVisible()  # the call returned at once; reading goes on
    qtbot.waitUntil(lambda: len(window.corpus.text()) == len(line) * 300_000, timeout=60_000)
    assert not window.corpus.progress.isVisible()
    assert window.corpus.edit.isReadOnly() and len(window.corpus.edit.toPlainText()) <= 200_000
    assert "preview shown" in window.findChild(QLabel, "corpusStats").text()
    assert window.training.train.isEnabled()


def test_a_bad_file_leaves_the_corpus_as_it_was(window, qtbot, tmp_path):
    use_tiny_settings(window)
    before = window.corpus.text()
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x89PNG\r\n\x00\x00binary")
    window.corpus.load_file(str(bad))
    notice = window.findChild(QLabel, "corpusNotice")
    qtbot.waitUntil(lambda: notice.isVisible(), timeout=10_000)
    assert "binary" in notice.text() and window.corpus.text() == before
    assert window.training.train.isEnabled()


def test_cycles_are_collected_on_the_gui_thread_never_in_a_worker(qtbot):
    import gc
    import threading

    assert not gc.isenabled()  # the conftest installs the app's collector
    freed_on_main: list[bool] = []

    class Probe:
        def __del__(self):
            freed_on_main.append(threading.current_thread() is threading.main_thread())

    def churn():  # a cycle, then far more garbage cycles than a collection's threshold
        probe = Probe()
        probe.self = probe
        del probe
        for _ in range(20_000):
            node: dict = {}
            node["self"] = node

    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    assert freed_on_main == []  # nothing collected in the worker
    qtbot.waitUntil(lambda: bool(freed_on_main), timeout=5_000)
    assert freed_on_main == [True]
