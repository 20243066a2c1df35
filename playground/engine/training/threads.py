"""How many CPU threads a run may use: the cores this process may run on, no more than
OMP_NUM_THREADS when it is set (torchrun sets it to 1 for each rank), shared between the ranks
on this machine, and fewer while other programs keep cores busy.

Why the last: torch's threads meet at a barrier after every operation. When another busy
program holds one of two cores, the thread waiting for that core's time slice holds up the
other, every operation: the seed preset took 39-112 s beside one busy process with 2 threads,
against 5 s with one. So the choice counts the threads of other programs that are running
now (Linux's /proc: every runnable thread on the machine, less this process's own) and leaves
their cores to them. Elsewhere that count is unknown and taken as 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

MAX_THREADS = 8  # the most threads a run takes, however many cores (trainer.threads_wanted)

def usable_cores(environ: Optional[dict] = None) -> int:
    """Cores this process may use: its CPU affinity, capped by OMP_NUM_THREADS (when it is a
    whole number of at least 1) and divided between the ranks torchrun started on this machine
    (LOCAL_WORLD_SIZE)."""
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    omp = _whole(environ.get("OMP_NUM_THREADS"))
    if omp:
        cores = min(cores, omp)
    ranks = _whole(environ.get("LOCAL_WORLD_SIZE"))
    if ranks and not omp:
        cores = cores // ranks
    return max(cores, 1)


def _whole(text) -> Optional[int]:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


def running_elsewhere(samples: int = 5, gap_s: float = 0.002, proc: Path = Path("/proc")) -> int:
    """Threads of other programs running or ready to run now: the fewest over a few looks a
    couple of milliseconds apart (a program that only woke for a moment is not busy). 0 where
    /proc cannot say."""
    seen = []
    for i in range(samples):
        count = _others_once(proc)
        if count is None:
            return 0
        seen.append(count)
        if i + 1 < samples:
            time.sleep(gap_s)
    return min(seen)


def _others_once(proc: Path) -> Optional[int]:
    try:
        running = int((proc / "loadavg").read_text().split()[3].split("/")[0])
        mine = 0
        for task in (proc / "self" / "task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue  # the thread ended meanwhile
            if stat[stat.rindex(")") + 2:][:1] == "R":
                mine += 1
    except (OSError, ValueError, IndexError):
        return None
    return max(running - mine, 0)


def threads_for(wanted: int, environ: Optional[dict] = None, busy: Optional[int] = None) -> int:
    """`wanted` threads (what the step's size calls for), no more than the usable cores, less
    those other programs keep busy; at least 1."""
    cores = usable_cores(environ)
    busy = running_elsewhere() if busy is None else busy
    return max(1, min(wanted, cores - busy))
