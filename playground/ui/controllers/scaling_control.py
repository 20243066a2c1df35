"""Scaling control: runs a ladder of model sizes (engine.scaling) on a worker, one run after
another, and relays what it reports as signals. Each run's training events go out under the same
names as the TrainingController's, so the loss plot draws every run as it trains (the finished
ones stay as earlier runs). Stop ends the ladder after the current step, keeping finished runs.
plan_runs and run_seconds say what a ladder will train and how long it will take, before it starts."""

from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import QObject, Signal, Slot

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.data.corpus import distinct_windows
from playground.engine.training.control import TrainControl
from playground.engine.training.estimate import estimate
from playground.engine.wording import duration, plural
from playground.ui.controllers.workers import WorkerPool

MODES = {"tokens": "equal tokens", "flops": "equal compute", "frontier": "frontier (best size per budget)"}


def plan_runs(model: ModelConfig, train: TrainConfig, mode: str, sizes: int, amount: float,
              budgets: tuple = (), smallest: int = 10_000, largest: int = 2_000_000) -> list[tuple]:
    """(config, steps) of every run the ladder will train, by the engine's own rules (ladder,
    Budget.steps_for, the frontier skipping runs under MIN_FRONTIER_STEPS), training nothing.
    run_ladder and run_frontier plan inside their generators, so the skip rule is repeated
    here. ConfigError (a ValueError) says in words why the ladder cannot be planned."""
    from playground.engine.training import scaling
    configs = scaling.ladder(model, sizes, smallest, largest)
    if mode != "frontier":
        budget = scaling.Budget(mode, amount)
        return [(cfg, budget.steps_for(cfg, train)) for cfg in configs]
    plan = []
    for amount_flops in budgets:
        budget = scaling.Budget("flops", amount_flops)
        steps = [(cfg, budget.steps_for(cfg, train)) for cfg in configs]
        plan += [(cfg, n) for cfg, n in steps if n >= scaling.MIN_FRONTIER_STEPS]
    return plan


def run_seconds(plan: list[tuple], train: TrainConfig, windows: int) -> list[float]:
    """Each planned run's estimated wall time (engine.estimate, with the run's own settings:
    its steps and evaluations); `windows` is the corpus's distinct training windows."""
    from playground.engine.training.scaling import run_settings
    return [estimate(cfg, run_settings(train, steps), windows).run_s for cfg, steps in plan]


def describe_plan(seconds: list[float]) -> str:
    """'5 runs, about 1.2 min on this computer (an estimate)' from run_seconds."""
    took = duration(sum(seconds))
    return (f"{plural(len(seconds), 'run')}, {took if took.startswith('under') else 'about ' + took} "
            "on this computer (an estimate)")


def time_left(estimates: list[float], finished_seconds: list[float]) -> Optional[float]:
    """The remaining runs' estimates scaled by how the finished runs compared with theirs; None
    without estimates. (The engine's RunFinished.seconds_left scales by FLOPs, which a ladder's
    first, tiny runs mislead: their time is mostly fixed cost per step, so it overstates the
    rest several times over.)"""
    done = len(finished_seconds)
    planned = sum(estimates[:done])
    if not estimates or planned <= 0:
        return None
    return sum(finished_seconds) / planned * sum(estimates[done:])


class ScalingController(QObject):
    started = Signal(object)        # engine Started event of each run (for the loss plot)
    stepped = Signal(object)        # engine Step event
    evaluated = Signal(object)      # engine Eval event
    ended = Signal(object)          # engine Done event of each run
    ladderStarted = Signal(object)  # engine LadderStarted
    runStarted = Signal(object)     # engine RunStarted
    runFinished = Signal(object)    # engine RunFinished (its RunResult, the time left)
    ladderDone = Signal(object)     # engine LadderDone (the runs kept, the fit)
    failed = Signal(str)

    def __init__(self, workers: WorkerPool, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.workers = workers
        self._control: Optional[TrainControl] = None
        self._label = ""
        self.out_dir = ""
        self._windows = (None, 0, 0)  # (text, block size, its distinct windows) last counted

    @property
    def running(self) -> bool:
        return self._control is not None

    @property
    def run_label(self) -> str:
        """The run in flight in a few words, for the loss plot's legend."""
        return self._label

    def start(self, corpus_name: str, text: str, model: ModelConfig, train: TrainConfig,
              mode: str, sizes: int, amount: float, budgets: tuple = (), smallest: int = 10_000,
              largest: int = 2_000_000, out_dir: Optional[str] = None) -> bool:
        """Run the ladder on a worker; False when one runs already. mode "tokens" or "flops"
        trains every size to `amount`; "frontier" trains every size to each of `budgets` FLOPs.
        Each finished run's model is saved in out_dir (a new folder in the data folder)."""
        if self.running:
            return False
        from playground.engine.data.download import data_dir
        # beside the downloaded corpora, in the user's data folder
        self.out_dir = out_dir or str(data_dir().parent / "scaling" / time.strftime("%Y%m%d-%H%M%S"))
        control = self._control = TrainControl()
        out = self.out_dir

        def run():
            from pathlib import Path

            from playground.engine.training import scaling
            from playground.engine.training.prepare import prepare_corpus
            Path(out).mkdir(parents=True, exist_ok=True)
            corpus = prepare_corpus(corpus_name, text, model.block_size, train)
            if mode == "frontier":
                events = scaling.run_frontier(corpus, model, train, sizes, budgets, control, out,
                                              smallest=smallest, largest=largest)
            else:
                events = scaling.run_ladder(corpus, model, train, sizes, scaling.Budget(mode, amount),
                                            control, out, smallest=smallest, largest=largest)
            yield from events

        self.workers.run(run, "scaling", self._on_event, self.failed, self._on_finished)
        return True

    def estimate(self, corpus_name: str, text: str, model: ModelConfig, train: TrainConfig, mode: str,
                 sizes: int, amount: float, budgets: tuple = (), smallest: int = 10_000,
                 largest: int = 2_000_000) -> list[float]:
        """The estimated seconds of each run start() with these arguments would train;
        ConfigError (a ValueError) says in words why the ladder cannot be planned."""
        runs = plan_runs(model, train, mode, sizes, amount, budgets, smallest, largest)
        known, block, windows = self._windows
        if known is not text or block != model.block_size:  # counted once per text and block
            windows = distinct_windows(text, model.block_size)
            self._windows = (text, model.block_size, windows)
        return run_seconds(runs, train, windows)

    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()

    @Slot(object)
    def _on_event(self, event) -> None:
        from playground.engine import events as ev
        from playground.engine.training import scaling
        if isinstance(event, scaling.RunEvent):
            inner = event.event
            relay = {ev.Started: self.started, ev.Step: self.stepped, ev.Eval: self.evaluated,
                     ev.Done: self.ended}.get(type(inner))
            if relay is not None:
                relay.emit(inner)
            return
        if isinstance(event, scaling.RunStarted):
            self._label = f"scale run {event.index + 1}: {event.params:,} parameters"
        relay = {scaling.LadderStarted: self.ladderStarted, scaling.RunStarted: self.runStarted,
                 scaling.RunFinished: self.runFinished, scaling.LadderDone: self.ladderDone}.get(type(event))
        if relay is not None:
            relay.emit(event)

    @Slot()
    def _on_finished(self) -> None:
        self._control = None
