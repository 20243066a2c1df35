"""Training beside a busy program: the seed preset with the automatic thread count on an idle
machine, then beside one program that keeps a core busy, then beside it with two threads forced
(what the automatic choice was before it looked at the other programs). Each run is its own
`python -m playground train` process, as a user starts it; the busy program is a Python loop.
Goal: beside the busy program, within 2x of the idle time."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BUSY = "while True: pass"


def _run(steps: int, threads: int, folder: Path) -> dict:
    log = folder / f"run-{threads}-{len(list(folder.iterdir()))}.jsonl"
    subprocess.run([sys.executable, "-m", "playground", "train", "--preset", "seed", "--steps", str(steps),
                    "--eval-interval", str(steps), "--threads", str(threads), "--quiet", "--log-json", str(log)],
                   check=True, capture_output=True, timeout=900)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    started = next(e for e in events if e["event"] == "started")
    done = next(e for e in events if e["event"] == "done")
    return {"seconds": done["elapsed_s"], "threads": started["threads"]}


def rows(quick: bool) -> list[dict]:
    steps, repeats = (100, 1) if quick else (500, 3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        idle = [_run(steps, 0, folder) for _ in range(repeats)]
        busy = subprocess.Popen([sys.executable, "-c", BUSY])
        try:
            beside = [_run(steps, 0, folder) for _ in range(repeats)]
            forced = [_run(steps, 2, folder) for _ in range(repeats)]
        finally:
            busy.kill()
            busy.wait()
    idle_s = statistics.median(r["seconds"] for r in idle)
    beside_s = statistics.median(r["seconds"] for r in beside)
    forced_s = statistics.median(r["seconds"] for r in forced)
    picked = sorted({r["threads"] for r in beside})
    return [{"name": "busy_machine", "target": "seed beside a busy program <= 2x its idle time (auto threads)",
             "measured": f"{steps} steps: idle {idle_s:.1f} s (auto {idle[0]['threads']} threads), beside a busy "
                         f"program {beside_s:.1f} s (auto {'/'.join(map(str, picked))}) = {beside_s / idle_s:.2f}x",
             "reference": f"2 threads forced beside it: {forced_s:.1f} s = {forced_s / idle_s:.1f}x",
             "passed": beside_s <= 2 * idle_s,
             "details": {"steps": steps, "idle": idle, "beside": beside, "forced_2_threads": forced}}]
