"""Scaling control: runs a ladder of model sizes (engine.scaling) on a worker, one run after
another, and relays what it reports as signals. Each run's training events go out under the same
names as the TrainingController's, so the loss plot draws every run as it trains (the finished
ones stay as earlier runs). Stop ends the ladder after the current step, keeping finished runs."""

from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import QObject, Signal, Slot

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.control import TrainControl
from playground.ui.worker import GeneratorWorker, WorkerPool

MODES = {"tokens": "equal tokens", "flops": "equal compute", "frontier": "frontier (best size per budget)"}


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
        from playground.engine.download import data_dir
        # beside the downloaded corpora, in the user's data folder
        self.out_dir = out_dir or str(data_dir().parent / "scaling" / time.strftime("%Y%m%d-%H%M%S"))
        control = self._control = TrainControl()
        out = self.out_dir

        def run():
            from pathlib import Path

            from playground.engine import scaling
            from playground.engine.corpus import build_corpus
            Path(out).mkdir(parents=True, exist_ok=True)
            corpus = build_corpus(corpus_name, text, train.val_fraction, model.block_size,
                                  kind=train.tokenizer, vocab_size=train.bpe_vocab)
            if mode == "frontier":
                events = scaling.run_frontier(corpus, model, train, sizes, budgets, control, out,
                                              smallest=smallest, largest=largest)
            else:
                events = scaling.run_ladder(corpus, model, train, sizes, scaling.Budget(mode, amount),
                                            control, out, smallest=smallest, largest=largest)
            yield from events

        worker = GeneratorWorker(run, "scaling")
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self.failed)
        worker.finished.connect(self._on_finished)
        self.workers.launch(worker)
        return True

    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()

    @Slot(object)
    def _on_event(self, event) -> None:
        from playground.engine import events as ev
        from playground.engine import scaling
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
