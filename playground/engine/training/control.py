"""Stop and pause flags for a training run, shared between the GUI thread and the worker."""

from __future__ import annotations

import threading
import time
from typing import Optional


class TrainControl:
    """Stop and pause flags, safe to set from any thread; checked between steps."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._parked = threading.Event()  # set while the loop is held by a pause

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

    @property
    def parked(self) -> bool:
        """True while the training loop is held between two steps by a pause."""
        return self._parked.is_set()

    def hold(self) -> float:
        """Called by the loop between steps: wait while paused (stop and resume both wake
        it); returns the seconds spent waiting."""
        if not self.paused:
            return 0.0
        t0 = time.perf_counter()
        self._parked.set()
        try:
            self._running.wait()
        finally:
            self._parked.clear()
        return time.perf_counter() - t0

    def wait_parked(self, timeout: Optional[float] = None) -> bool:
        """Wait until the loop is held by a pause (for tests and tools); False on timeout."""
        return self._parked.wait(timeout)
