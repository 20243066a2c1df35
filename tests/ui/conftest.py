"""A main window on a throw-away settings file, and a helper for tiny, fast settings."""

import pytest

from playground.ui.main_window import SETTINGS_ENV

CORPUS = "the quick brown fox jumps over the lazy dog. " * 20


@pytest.fixture(autouse=True, scope="session")
def _collect_on_the_gui_thread(qapp):
    """As the app does: Python's cycle collector runs on the GUI thread only (ui/controllers/gui_collector.py)."""
    from playground.ui.controllers.gui_collector import collect_on_gui_thread
    collect_on_gui_thread(qapp)


class Answers:
    """Stands in for the "unsaved model" question: records each question and gives `answer`
    ('save', 'discard' or 'cancel'). A real dialog would block a test that closes the window."""

    def __init__(self, answer: str = "discard"):
        self.answer, self.questions = answer, []

    def __call__(self, text: str, detail: str) -> str:
        self.questions.append((text, detail))
        return self.answer


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "settings.ini"))
    from playground.ui.main_window import MainWindow
    # the offscreen screen is 800x600: fitting to it 300 ms and 1 s after the show would shrink a
    # window a test has just sized, depending on how fast the test runs (the real-window tier
    # checks the fit on a real screen with a frame)
    monkeypatch.setattr(MainWindow, "FIT_DELAYS", ())
    win = MainWindow()
    win.ask = Answers("discard")
    qtbot.addWidget(win)
    win.generation.pace.setValue(0)  # as fast as it runs: tests read the whole text at once
    win.show()
    yield win
    win.train_ctl.stop()
    win.gen_ctl.stop()
    win.workers.stop_all(5000)


def use_tiny_settings(win, steps=40, text=CORPUS, eval_interval=20):
    win.corpus.set_custom_text(text)
    s = win.settings.spins
    for name, value in [("layers", 1), ("heads", 2), ("width", 16), ("block", 8), ("batch", 8),
                        ("steps", steps), ("warmup", 0), ("eval_interval", eval_interval),
                        ("threads", 1)]:
        s[name].setValue(value)
    win.settings.lr.setValue(0.01)
