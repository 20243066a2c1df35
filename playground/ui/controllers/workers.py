"""Drive an engine iterator on a QThread and emit what it yields, like superqt's GeneratorWorker.

Only plain values cross the thread boundary (the engine's frozen events, strings, tuples).
Stopping is cooperative: `abort()` sets a flag checked between items; nothing is terminated.
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Callable, Iterable, Optional

from PySide6.QtCore import QObject, QThread, Signal, Slot

log = logging.getLogger(__name__)


class GeneratorWorker(QObject):
    yielded = Signal(object)
    errored = Signal(str)
    finished = Signal()

    def __init__(self, make_iterable: Callable[[], Iterable], name: str = "worker"):
        super().__init__()
        self._make_iterable = make_iterable
        self._abort = threading.Event()  # plain Python: the loop never goes through Qt to read it
        self.name = name

    def abort(self) -> None:
        """Ask the loop to end before the next item (safe from any thread)."""
        self._abort.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    @Slot()
    def work(self) -> None:
        """Run the iterable to its end; callable directly on the main thread in tests."""
        # look the Qt attributes up once: the loop then touches only plain Python objects
        aborted, emit = self._abort.is_set, self.yielded.emit
        try:
            for item in self._make_iterable():
                if aborted():
                    break
                emit(item)
        except Exception as exc:  # a worker must never die silently: say what happened
            from playground.engine.errors import PlaygroundError
            if isinstance(exc, PlaygroundError):
                message = str(exc)
            else:
                log.error("%s failed:\n%s", self.name, traceback.format_exc())
                message = f"{type(exc).__name__}: {exc}"
            self.errored.emit(message)
        finally:
            self.finished.emit()


class WorkerHandle:
    """A worker with its thread; keeps Python references alive until the thread has ended."""

    def __init__(self, worker: GeneratorWorker, parent: Optional[QObject] = None):
        self.worker = worker
        self.thread = QThread(parent)
        self.thread.setObjectName(worker.name)
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.work)
        worker.finished.connect(self.thread.quit)

    def start(self) -> None:
        self.thread.start()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def stop(self, wait_ms: int = 3000) -> bool:
        """Abort cooperatively and wait for the thread to end; True when it did."""
        self.worker.abort()
        self.thread.quit()
        return self.thread.wait(wait_ms)


class WorkerPool(QObject):
    """Starts workers on threads of their own and keeps each until its thread has ended, so
    nothing is destroyed while running; stop_all() is what closing the window waits on."""

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.handles: list[WorkerHandle] = []

    def run(self, make_iterable: Callable[[], Iterable], name: str, yielded=None, errored=None,
            finished=None) -> GeneratorWorker:
        """A worker for this iterable on a thread of its own, its signals connected to the given
        slots (each optional); returns the worker (abort() stops it)."""
        worker = GeneratorWorker(make_iterable, name)
        for signal, slot in ((worker.yielded, yielded), (worker.errored, errored), (worker.finished, finished)):
            if slot is not None:
                signal.connect(slot)
        self.launch(worker)
        return worker

    def launch(self, worker: GeneratorWorker) -> WorkerHandle:
        handle = WorkerHandle(worker, self)
        # a slot of this GUI-thread object, so the clean-up runs on the GUI thread
        handle.thread.finished.connect(self._forget_finished)
        self.handles.append(handle)
        handle.start()
        return handle

    @Slot()
    def _forget_finished(self) -> None:
        for handle in [h for h in self.handles if h.thread.isFinished()]:
            self.handles.remove(handle)
            handle.worker.deleteLater()
            handle.thread.deleteLater()

    def stop_all(self, wait_ms: int = 3000) -> bool:
        """Abort every worker and wait for its thread; True when all of them ended."""
        ok = True
        for handle in list(self.handles):
            ok = handle.stop(wait_ms) and ok
        return ok
