"""Runs the app's window on a real X display (the test starts Xvfb and a window manager) and does
one scenario to it, printing what it measured as JSON lines on stdout. Run by
tests/real_window/test_real_window.py in a process of its own, as a user's launch would be.

Scenarios:
  fit       the window at launch, after the longest messages the app shows, and maximised:
            its frame against the screen, every dock tab bar's place and its tabs' widths
  download  quits (Ctrl+Q from the test, through X) while a download is stalled
  training  quits while a model trains; the "unsaved model" question is answered Discard
  ladder    quits while a scaling ladder trains
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def say(kind: str, **values) -> None:
    print(json.dumps({"kind": kind, **values}), flush=True)


def rect(r) -> list[int]:
    return [r.x(), r.y(), r.width(), r.height()]


def geometry(window) -> dict:
    from PySide6.QtWidgets import QTabBar
    screen = window.screen().availableGeometry()
    bars = []
    for bar in window.findChildren(QTabBar):
        # Qt parks the docks behind another's tab outside the window, "visible": nobody sees their bars
        if not bar.isVisible() or bar.count() < 2 or not window.rect().contains(bar.mapTo(window, bar.rect().topLeft())):
            continue
        top_left = bar.mapToGlobal(bar.rect().topLeft())
        bars.append({"tabs": [bar.tabText(i) for i in range(bar.count())],
                     "rect": [top_left.x(), top_left.y(), bar.width(), bar.height()],
                     # a tab narrower than its text needs is drawn elided ("Gene…")
                     "cut": [bar.tabText(i) for i in range(bar.count())
                             if bar.tabRect(i).width() < bar.fontMetrics().horizontalAdvance(bar.tabText(i)) + 8]})
    return {"screen": rect(screen), "frame": rect(window.frameGeometry()), "inner": rect(window.geometry()),
            "maximised": window.isMaximized(),
            "min_hint": [window.minimumSizeHint().width(), window.minimumSizeHint().height()], "bars": bars}


class Stall(http.server.BaseHTTPRequestHandler):
    """Answers with headers, then sends nothing for up to 20 s: a stalled download."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.flush()
        for _ in range(200):
            time.sleep(0.1)


def main(scenario: str) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from playground.ui.app import prepare_application
    app = QApplication(sys.argv[:1])
    prepare_application(app)
    from playground.ui.main_window import MainWindow
    window = MainWindow()
    window.show()
    steps = []

    def answer_dialogs():  # the real question, answered as a user would: Discard
        for box in app.topLevelWidgets():
            if isinstance(box, QMessageBox) and box.isVisible() and box.objectName() == "unsavedDialog":
                say("asked", text=box.text())
                box.button(QMessageBox.Discard).click()
    dialogs = QTimer(interval=100)
    dialogs.timeout.connect(answer_dialogs)
    dialogs.start()

    def later(ms, fn):
        steps.append((ms, fn))

    if scenario == "fit":
        def launch():
            say("launch", **geometry(window))

        def long_messages():
            from playground.engine.data import download
            long_url = "http://127.0.0.1:9/" + "a-very-long-folder-name/" * 12 + "book.txt"
            download.SOURCES["alice"] = download.Source("alice", "Alice", long_url, 1000, "0" * 64)
            window.corpus.select("alice")  # fails at once (nothing listens on port 9), long URL in words
            window.status.message("Stopped: " + "/home/someone/.local/share/gpt-playground/scaling/" * 6)
            window.scaling.eta.setText("Stopped: 1 run kept in " + "/a/long/path/of/folders" * 20)
            window.samples.add(100, "x" * 2000)
            window.health.hint.setText("The loss blew up: " + "far above random guessing. " * 20)

        def after():
            window.docks["scaling"].raise_tab()
            say("after_messages", notice=window.corpus.notice.text()[:80], **geometry(window))

        def maximised():
            window.showMaximized()

        def report_max():
            say("maximised", **geometry(window))
            window.close()
        later(2500, launch)
        later(2600, long_messages)
        later(4500, after)
        later(4600, maximised)
        later(6500, report_max)
    elif scenario == "download":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()

        def start_download():
            from playground.engine.data import download
            url = f"http://127.0.0.1:{server.server_address[1]}/stall"
            download.SOURCES["sherlock"] = download.Source("sherlock", "Sherlock", url, 100000, "0" * 64)
            window.corpus.select("sherlock")
            say("ready", window=int(window.winId()), loading=window.corpus.progress.isVisible())
        later(2000, start_download)
    elif scenario == "training":
        def start_training():
            window.corpus.select("phrase")
            window.settings.spins["steps"].setValue(100_000)
            window.start_training()

        def ready():
            say("ready", window=int(window.winId()), step=window.current.step)
        later(2000, start_training)
        later(6000, ready)
    elif scenario == "ladder":
        def start_ladder():
            window.corpus.select("phrase")
            window.scaling.confirm = lambda text: True
            window.docks["scaling"].raise_tab()
            window.scaling.start()

        def ready():
            say("ready", window=int(window.winId()), running=window.scale_ctl.running)
        later(2000, start_ladder)
        later(6000, ready)
    def run_steps(index: int = 0, at: int = 0) -> None:
        # one after the other, each when the previous is done: timers of a few seconds are
        # coarse (Qt moves them by up to 5%), so two set together can fire in either order
        if index < len(steps):
            ms, fn = steps[index]
            QTimer.singleShot(max(ms - at, 0), lambda: (fn(), run_steps(index + 1, ms)))
    run_steps()
    code = app.exec()
    say("exit", code=code)
    return code


if __name__ == "__main__":
    os.environ.pop("QT_QPA_PLATFORM", None)
    sys.exit(main(sys.argv[1]))
