"""Stop and pause flags for a training run, shared between the GUI thread and the worker."""

from __future__ import annotations

import threading
from typing import Optional


class TrainControl:
    """Stop and pause flags, safe to set from any thread; checked between steps."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, timeout: Optional[float] = None) -> None:
        self._running.wait(timeout)
