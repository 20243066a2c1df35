"""Python's cyclic garbage collector, run on the GUI thread only.

Left automatic, the collector runs in whichever thread happens to allocate when a threshold is
crossed: often a worker (training, generation, an import of half of torch). Collecting there
destroys Qt wrappers of GUI objects off the GUI thread, which can crash or deadlock against the
GUI thread (it waits for the GIL inside a Qt call while the worker, holding the GIL, waits for
Qt). Seen here as a rare hang of the window's tests with a worker deep in an import and the GUI
thread stuck entering a slot. So automatic collection is switched off and this timer collects,
on the GUI thread, whichever generations have passed their thresholds (calibre does the same).
Reference counting still frees everything that is not in a cycle at once, in any thread.
"""

from __future__ import annotations

import gc
from typing import Optional

from PySide6.QtCore import QObject, QTimer, Slot

INTERVAL_MS = 500


class GuiCollector(QObject):
    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.collections = 0
        self.timer = QTimer(self, interval=INTERVAL_MS)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    @Slot()
    def check(self) -> None:
        """Collect the oldest generation whose count passed its threshold (and the younger)."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.threshold[generation]:
                gc.collect(generation)
                self.collections += 1
                return


def collect_on_gui_thread(app) -> GuiCollector:
    """Install once per QApplication (it is kept as the application's child)."""
    existing = app.findChild(GuiCollector)
    return existing if existing is not None else GuiCollector(app)
