"""The composition root: create the QApplication and the main window, then load torch in the
background after the first paint so the window appears at once."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

START = time.perf_counter()


def _warm_up_torch(measured=None) -> None:
    """Load torch (the first Train click then finds it loaded), then measure this machine's
    matmul speed for the time estimates (~0.1 s) and call `measured` (a Qt signal's emit: it
    crosses to the GUI thread)."""
    import torch  # noqa: F401

    import playground.engine.training.trainer  # noqa: F401
    from playground.engine.training.estimate import calibrate
    calibrate()
    if measured is not None:
        try:
            measured()
        except RuntimeError:  # the window closed meanwhile (its C++ side is gone)
            pass


def prepare_application(app) -> None:
    """What the app sets on its QApplication before any window: its names (where settings
    live) and Python's cycle collection on the GUI thread only."""
    app.setOrganizationName("GPT Playground")
    app.setApplicationName("GPT Playground")
    from playground.ui.controllers.gui_collector import collect_on_gui_thread
    collect_on_gui_thread(app)  # cycles are collected on this thread only, never in a worker


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from playground.ui.platform_check import window_problem
    problem = window_problem()
    if problem:  # Qt would abort with a message about plugins: say it in words, exit 1
        print(problem, file=sys.stderr)
        return 1
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv if argv is None else argv)
    prepare_application(app)
    from playground.ui.main_window import MainWindow
    window = MainWindow()
    window.show()

    warm_up = threading.Thread(target=_warm_up_torch, args=(window.machineMeasured.emit,),
                               name="torch-warm-up", daemon=True)

    def first_paint() -> None:
        if os.environ.get("PLAYGROUND_STARTUP_PROBE"):
            print(f"window shown after {time.perf_counter() - START:.3f} s", flush=True)
            QTimer.singleShot(0, window.close)
            return
        warm_up.start()

    QTimer.singleShot(0, first_paint)
    code = app.exec()
    if warm_up.is_alive():  # closed within its first second: let the measurement end (a thread
        warm_up.join(10)    # still inside torch while Python shuts down aborts the process)
    return code


__all__ = ["main", "prepare_application"]
