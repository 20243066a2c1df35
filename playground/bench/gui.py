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


def _open_panels(app, window) -> None:
    from PySide6.QtCore import QEventLoop
    steps, warmup = window.settings.value("steps"), window.settings.value("warmup")
    window.settings.spins["warmup"].setValue(0)
    window.settings.spins["steps"].setValue(20)
    loop = QEventLoop()
    window.trainingFinished.connect(loop.quit)
    if not window.training.train.isEnabled():
        raise RuntimeError(f"cannot train: {window.train_problem()}")
    window.training.train.click()  # a short first run, so there is a model to look inside
    loop.exec()
    window.generation.prompt.setText("ROMEO:")
    window.generation.length.setValue(100)
    window.generationFinished.connect(loop.quit)
    window.generation.generate.click()
    loop.exec()
    window.docks["attention"].raise_tab()
    window.gen_ctl.attentionReady.connect(loop.quit)
    window.attention.refresh.click()
    loop.exec()
    window.docks["health"].raise_tab()
    window.settings.spins["steps"].setValue(steps)
    window.settings.spins["warmup"].setValue(warmup)


def _open_inside(window, kind: str) -> None:
    from playground.ui.views.inside_panel import TABS
    window.generation.prompt.setText("ROMEO: What light")
    window.docks["inside"].raise_tab()
    panel = window.inside
    panel.tabs.setCurrentIndex(list(TABS).index(kind))


def headless(steps: int) -> float:
    from playground.engine.data.corpus import find_shakespeare, read_text_file
    from playground.engine.events import Step
    from playground.engine.presets import PRESETS
    from playground.engine.training.prepare import prepare_run
    preset = PRESETS["shakespeare-cpu"]
    trainer = prepare_run("shakespeare", read_text_file(find_shakespeare()), preset.model,
                          preset.train.replace(max_steps=steps, eval_interval=10**6, sample_chars=0))
    events = [e for e in trainer.run() if isinstance(e, Step)]
    step_s, _ = _rate(events)
    return preset.train.batch_size * preset.model.block_size / step_s


def gui(steps: int, probe_on: bool = True, panels: bool = False, inside: str = "") -> tuple[float, list[float], int]:
    """Train shakespeare-cpu in the window. panels=True opens the insight views first: the
    health tab (live charts), the attention tab with maps shown (refreshed at each evaluation,
    every 50 steps here) and a generated text with its odds chart. inside="lens" (or surprise,
    embeddings, induction) shows that view of the Inside tab instead, read at each evaluation."""
    os.environ.setdefault("PLAYGROUND_SETTINGS_FILE", os.path.join(tempfile.mkdtemp(), "s.ini"))
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from playground.ui.controllers.gui_collector import collect_on_gui_thread
    collect_on_gui_thread(app)  # as the app does
    from playground.ui.main_window import MainWindow
    window = MainWindow()
    window.ask = lambda text, detail: "discard"  # closing asks about the unsaved model: nobody is there to answer
    window.show()
    window.settings.apply_preset("shakespeare-cpu")
    window.corpus.select("shakespeare")
    loop = QEventLoop()
    QTimer.singleShot(0, lambda: None)
    deadline = time.time() + 30
    while len(window.corpus.text()) < 1_000_000 and time.time() < deadline:
        app.processEvents(QEventLoop.AllEvents, 50)
    window.settings.spins["steps"].setValue(steps)
    window.settings.spins["eval_interval"].setValue(50 if panels or inside else 10**6)
    if panels:
        _open_panels(app, window)
    if inside:
        _open_inside(window, inside)
    events = []
    window.train_ctl.stepped.connect(events.append)
    probe = Probe(window, events)
    window.trainingFinished.connect(loop.quit)
    if probe_on:
        probe.timer.start()
    if not window.training.train.isEnabled():
        raise RuntimeError(f"cannot train: {window.train_problem()}")
    window.training.train.click()
    loop.exec()
    probe.timer.stop()
    gaps = probe.gaps
    step_s, _ = _rate(events)
    redraws = window.plot.redraws
    window.close()
    return window.settings.value("batch") * window.settings.value("block") / step_s, gaps, redraws


def rss_mb() -> float:
    from playground.engine.events import proc_status_mb
    value = proc_status_mb("VmRSS")
    return float("nan") if value is None else value


class Probe:
    """A 10 ms timer on the GUI thread recording how late it fires during training. Slots
    here are bound methods: PySide6 6.12.0 over-releases a reference on each call of a
    lambda or plain function connected to a signal, which aborts long runs."""

    def __init__(self, window, events: list):
        from PySide6.QtCore import QElapsedTimer, QTimer
        self.window, self.events, self.gaps = window, events, []
        self.clock = QElapsedTimer()
        self.timer = QTimer(interval=PROBE_MS)
        self.timer.timeout.connect(self.tick)

    def tick(self) -> None:
        if self.clock.isValid() and self.window.train_ctl.running and len(self.events) > 20:
            self.gaps.append(self.clock.nsecsElapsed() / 1e6)
        self.clock.restart()


class SoakProbe:
    """Records memory every 1,000 steps and times every plot redraw (bound methods, see Probe)."""

    def __init__(self, memory: list, plot):
        self.memory, self.plot, self.redraw_ms = memory, plot, []

    def step(self, ev) -> None:
        if ev.step % 1000 == 0:
            self.memory.append((ev.step, rss_mb()))

    def redraw(self) -> None:
        t0 = time.perf_counter()
        self.plot.redraw()
        self.redraw_ms.append((time.perf_counter() - t0) * 1000)


def soak(steps: int) -> list[dict]:
    """A tiny model for many steps with the plot fed live: memory and redraw time."""
    os.environ.setdefault("PLAYGROUND_SETTINGS_FILE", os.path.join(tempfile.mkdtemp(), "s.ini"))
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication
    _app = QApplication.instance() or QApplication([])  # kept alive for the run
    from playground.ui.controllers.gui_collector import collect_on_gui_thread
    collect_on_gui_thread(_app)
    from playground.ui.main_window import MainWindow
    from playground.ui.views.loss_plot import REDRAW_MS
    window = MainWindow()
    window.ask = lambda text, detail: "discard"  # closing asks about the unsaved model: nobody is there to answer
    window.show()
    window.corpus.select("fable")
    for name, value in [("layers", 1), ("heads", 2), ("width", 16), ("block", 8), ("batch", 8),
                        ("steps", steps), ("warmup", 0), ("eval_interval", 1000), ("threads", 1)]:
        window.settings.spins[name].setValue(value)
    memory: list[tuple[int, float]] = []
    soak_probe = SoakProbe(memory, window.plot)
    redraw_ms = soak_probe.redraw_ms
    window.plot.timer.timeout.disconnect()
    window.plot.timer.timeout.connect(soak_probe.redraw)
    window.train_ctl.stepped.connect(soak_probe.step)
    loop = QEventLoop()
    window.trainingFinished.connect(loop.quit)
    window.training.train.click()
    loop.exec()
    points = window.plot.point_count
    window.close()
    warm = [m for s, m in memory if s >= 2000]
    growth = (max(warm) - warm[0]) / warm[0] if len(warm) > 1 else float("nan")
    late = sorted(redraw_ms[len(redraw_ms) // 2:])
    p99 = late[int(0.99 * (len(late) - 1))] if late else float("nan")
    return [
        {"name": "soak_memory", "target": f"{steps:,} steps, plot live: RSS grows < 10% after warm-up",
         "measured": f"{warm[0]:.0f} MB at step 2,000 -> max {max(warm):.0f} MB ({growth:+.1%})",
         "reference": f"{points:,} points on the plot", "passed": growth < 0.10,
         "details": {"rss_mb_by_step": memory}},
        {"name": "soak_redraw", "target": f"plot redraw within its {REDRAW_MS} ms frame",
         "measured": f"p99 redraw {p99:.1f} ms over the second half ({len(late)} frames), max {max(late):.1f} ms",
         "reference": f"{points:,} points", "passed": p99 < REDRAW_MS,
         "details": {"p99_ms": p99, "max_ms": max(late), "frames": len(redraw_ms)}},
    ]


def main() -> int:
    """One measurement per process (a process that trained on its main thread first trains
    slower in a worker thread afterwards, which the app never does)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--soak", type=int, default=0, help="run the soak bench for this many steps")
    parser.add_argument("--mode", choices=["headless", "gui", "probe", "panels", "inside-lens", "inside-surprise",
                                           "inside-embeddings", "inside-induction"], default="gui")
    args = parser.parse_args()
    if args.soak:
        print(json.dumps(soak(args.soak)))
    elif args.mode == "headless":
        print(json.dumps({"tokens_per_s": headless(args.steps)}))
    elif args.mode in ("gui", "panels") or args.mode.startswith("inside-"):  # no probe timer waking the GUI
        rate, _, redraws = gui(args.steps, probe_on=False, panels=args.mode == "panels",
                               inside=args.mode.removeprefix("inside-") if args.mode.startswith("inside-") else "")
        print(json.dumps({"tokens_per_s": rate, "redraws": redraws}))
    else:
        rate, gaps, redraws = gui(args.steps, probe_on=True)
        gaps.sort()
        p99 = gaps[int(0.99 * (len(gaps) - 1))] if gaps else float("nan")
        print(json.dumps({"tokens_per_s": rate, "p50": statistics.median(gaps) if gaps else None,
                          "p99": p99, "max": max(gaps, default=None), "ticks": len(gaps)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
