"""GUI bench (offscreen): training inside the window against headless training of the same
config, and how late a 10 ms probe timer fires on the GUI thread while training runs."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

PROBE_MS = 10


def _rate(events) -> float:
    """Tokens/s from step events after warm-up, evaluation pauses excluded (median step)."""
    gaps = [b.elapsed_s - a.elapsed_s for a, b in zip(events[20:], events[21:])]
    tokens = events[-1].tokens_per_s  # only for the batch size below
    return statistics.median(gaps), tokens


def headless(steps: int) -> float:
    from playground.engine.corpus import build_corpus, find_shakespeare, read_text_file
    from playground.engine.events import Step
    from playground.engine.presets import PRESETS
    from playground.engine.train import Trainer
    preset = PRESETS["shakespeare-cpu"]
    corpus = build_corpus("shakespeare", read_text_file(find_shakespeare()), 0.1, preset.model.block_size)
    trainer = Trainer(preset.model.replace(vocab_size=corpus.tokenizer.vocab_size),
                      preset.train.replace(max_steps=steps, eval_interval=10**6, sample_chars=0), corpus)
    events = [e for e in trainer.run() if isinstance(e, Step)]
    step_s, _ = _rate(events)
    return preset.train.batch_size * preset.model.block_size / step_s


def gui(steps: int) -> tuple[float, list[float], int]:
    os.environ.setdefault("PLAYGROUND_SETTINGS_FILE", os.path.join(tempfile.mkdtemp(), "s.ini"))
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from playground.ui.main_window import MainWindow
    window = MainWindow()
    window.show()
    window.settings.apply_preset("shakespeare-cpu")
    window.corpus.select("shakespeare")
    loop = QEventLoop()
    QTimer.singleShot(0, lambda: None)
    deadline = time.time() + 30
    while len(window.corpus.text()) < 1_000_000 and time.time() < deadline:
        app.processEvents(QEventLoop.AllEvents, 50)
    window.settings.spins["steps"].setValue(steps)
    window.settings.spins["eval_interval"].setValue(10**6)
    events = []
    window.session.stepped.connect(events.append)
    gaps: list[float] = []
    clock = QElapsedTimer()
    probe = QTimer(interval=PROBE_MS)

    def tick():
        if clock.isValid() and window.session.training and len(events) > 20:
            gaps.append(clock.nsecsElapsed() / 1e6)
        clock.restart()
    probe.timeout.connect(tick)
    window.trainingFinished.connect(loop.quit)
    probe.start()
    window.training.train.click()
    loop.exec()
    probe.stop()
    step_s, _ = _rate(events)
    redraws = window.plot.redraws
    window.close()
    return window.settings.value("batch") * window.settings.value("block") / step_s, gaps, redraws


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    base = headless(args.steps)
    inside, gaps, redraws = gui(args.steps)
    gaps.sort()
    p99 = gaps[int(0.99 * (len(gaps) - 1))] if gaps else float("nan")
    stall = p99 - PROBE_MS
    ratio = inside / base
    print(json.dumps([
        {"name": "gui_throughput", "target": ">= 90% of headless tokens/s (shakespeare-cpu)",
         "measured": f"{inside:,.0f} tok/s in the window = {ratio:.0%}",
         "reference": f"headless {base:,.0f} tok/s, same config, same process",
         "passed": ratio >= 0.9, "details": {"gui": inside, "headless": base, "plot_redraws": redraws}},
        {"name": "gui_stall", "target": "GUI event loop stall <= 50 ms at the 99th percentile",
         "measured": f"p99 probe interval {p99:.1f} ms (stall {stall:.1f} ms), max {max(gaps, default=0):.1f} ms",
         "reference": f"{PROBE_MS} ms probe timer, {len(gaps)} ticks during training",
         "passed": stall <= 50, "details": {"p50": statistics.median(gaps) if gaps else None,
                                            "p99": p99, "max": max(gaps, default=None), "ticks": len(gaps)}},
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
