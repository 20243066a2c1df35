"""Training control: starts a run on a worker (training a model, or fine-tuning one), relays its
events as signals, pauses and stops it. The run's trainer becomes the model in hand when its
first event arrives, on the GUI thread. Engine modules that import torch are imported in the
worker, so the window paints first."""

from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import QObject, Signal, Slot

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.training.control import TrainControl
from playground.ui.controllers.model_in_hand import CurrentModel, TrainedModel
from playground.ui.controllers.workers import WorkerPool

log = logging.getLogger(__name__)


class _Job:
    """One run: its stop/pause flags, and its trainer once the worker has built it (written by
    the worker before its first event, read on the GUI thread after that event)."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, label: str):
        self.control = TrainControl()
        self.model_cfg, self.train_cfg, self.label = model_cfg, train_cfg, label
        self.trainer = None
        self.done = None
        self.discarded = False  # reset or replaced: never becomes the model in hand
        # a fine-tune: how it adapts, the checkpoint it started from (kept intact: the run
        # trains a copy) and (parameters that train, all of them), counted on the worker
        self.adapt = self.base = self.trainable = None
        self.tag = ""           # the method in a word or two, for the plot's list of runs
        self.board = None       # the run's TensorBoard folder, when it writes one (set like trainer)


class TrainingController(QObject):
    started = Signal(object)     # engine Started event
    stepped = Signal(object)     # engine Step event
    evaluated = Signal(object)   # engine Eval event
    sampled = Signal(object)     # engine Sample event
    ended = Signal(object)       # engine Done event, or None when the run failed
    failed = Signal(str)         # a readable message for the user

    def __init__(self, current: CurrentModel, workers: WorkerPool, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.current, self.workers = current, workers
        self._job: Optional[_Job] = None
        self._running = False  # set on the GUI thread: start .. worker finished
        # a folder: each run also writes TensorBoard event files in a folder of its own there
        # (Run > Log runs for TensorBoard); read by the worker when a run starts
        self.tensorboard: Optional[str] = None

    @property
    def board_folder(self):
        """The TensorBoard folder of the run in hand (after its first event), or None."""
        return self._job.board if self._job is not None else None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def paused(self) -> bool:
        return self._running and self._job.control.paused

    @property
    def train_config(self) -> Optional[TrainConfig]:
        """The settings of the run in flight, or of the last one."""
        return self._job.train_cfg if self._job is not None else None

    @property
    def run_label(self) -> str:
        """The run's settings in a few words, for the plot's legend: a continued run says what
        it added to the model it continued."""
        return self._job.label if self._job is not None else ""

    @property
    def adaptation(self):
        """The AdaptConfig of the run in flight or of the last one, when it was a fine-tune."""
        return self._job.adapt if self._job is not None else None

    @property
    def run_tag(self) -> str:
        return self._job.tag if self._job is not None else ""

    @property
    def trainable(self) -> Optional[tuple[int, int]]:
        """A fine-tune's (parameters that train, all of them), once its worker has counted them."""
        return self._job.trainable if self._job is not None else None

    def base_of(self, value):
        """The checkpoint the last fine-tune started from, when `value` (the model in hand) is
        that fine-tune's model; else None."""
        job = self._job
        if job is None or job.base is None or job.trainer is None or job.discarded:
            return None
        return job.base if getattr(value, "trainer", None) is job.trainer else None

    def continue_problem(self, model_cfg: ModelConfig, train_cfg: TrainConfig, text: str = "") -> str:
        """Why the model in hand cannot go on training with these settings on this text ('' when
        it can): the fields that shape the model, and the tokenizer, must be the model's own, and
        a character model must know every character of the text."""
        in_hand = self.current.value
        if in_hand is None:
            return "there is no model to continue yet: Train one (or open a saved model)"
        if in_hand.tokenizer.kind == "char" and text:
            unknown = in_hand.tokenizer.encode_lenient("".join(sorted(set(text)))).unknown
            if unknown:
                shown = ", ".join(repr(c) for c in unknown[:6]) + (" and more" if len(unknown) > 6 else "")
                return (f"the text has characters the model never saw ({shown}): Train a new model "
                        "on it, or pick the text the model learned")
        changed = changed_settings(in_hand.config, model_cfg)
        if in_hand.tokenizer.kind != train_cfg.tokenizer:
            changed.append(f"tokenizer {in_hand.tokenizer.kind} -> {train_cfg.tokenizer}")
        elif train_cfg.tokenizer == "bpe":
            had = in_hand.train_config.bpe_vocab if in_hand.train_config else in_hand.tokenizer.vocab_size
            if had != train_cfg.bpe_vocab:
                changed.append(f"BPE vocabulary {had} -> {train_cfg.bpe_vocab}")
        if changed:
            return ("the settings no longer describe the model in hand (" + "; ".join(changed)
                    + "): Train starts a new model with them")
        return ""

    def start(self, corpus_name: str, text: str, model_cfg: ModelConfig, train_cfg: TrainConfig,
              continuing: bool = False) -> None:
        """Train on a worker: a new model from fresh weights, or (continuing) the model in hand
        for train_cfg.max_steps more steps with these training settings. The caller checks
        continue_problem() first. The corpus is encoded on the worker too."""
        if self._running:
            return
        previous = self.current.value.checkpoint() if continuing else None
        label = (f"{self.run_label or 'the model'}, then +{train_cfg.max_steps:,} at lr {train_cfg.learning_rate:g}"
                 if continuing else describe_run(model_cfg, train_cfg))
        job = self._job = _Job(model_cfg, train_cfg, label)

        def run():
            import copy

            from playground.engine.data.tasks import builtin_tasks
            from playground.engine.training.prepare import prepare_run
            # continuing trains a copy: an opened file's model may still be generating
            resume = copy.deepcopy(previous) if continuing else None
            trainer = prepare_run(corpus_name, text, model_cfg, train_cfg, resume, builtin_tasks(corpus_name))
            if job.control.stopped:  # reset or opened a file while the corpus was prepared
                return
            job.trainer = trainer
            yield from _logged(trainer, job, board_root)

        board_root = self.tensorboard
        self._running = True
        self.workers.run(run, "training", self._on_event, self._on_error, self._on_finished)

    def start_adaptation(self, base, corpus_name: str, text: str, request) -> None:
        """Fine-tune the checkpoint `base` on the text (a FinetuneRequest says how) on a worker:
        the corpus encoded by the base's tokenizer, a copy of its weights trained (the base
        itself stays as it is), the original text measured at every evaluation. The adapted
        model becomes the model in hand at the run's first event, as a trained one does."""
        from playground.ui.controllers.adaptation import describe_adaptation, method_tag, read_original
        if self._running:
            return
        adapt, train = request.adapt, request.train
        job = self._job = _Job(base.model_config, train, describe_adaptation(adapt, train, corpus_name))
        job.adapt, job.base, job.tag = adapt, base, method_tag(adapt)
        original, drop = request.original, request.drop_unknown

        def run():
            from playground.engine.data.tasks import builtin_tasks
            from playground.engine.model.lora import trainable
            from playground.engine.training.adapt import prepare_adaptation
            original_name, original_text = read_original(original)
            trainer = prepare_adaptation(base, corpus_name, text, train, adapt, original_name, original_text,
                                         drop, builtin_tasks(corpus_name))
            if job.control.stopped:
                return
            job.trainable, job.trainer = trainable(trainer.model), trainer
            yield from _logged(trainer, job, board_root)

        board_root = self.tensorboard
        self._running = True
        self.workers.run(run, "fine-tuning", self._on_event, self._on_error, self._on_finished)

    def pause(self) -> None:
        if self._job is not None:
            self._job.control.pause()

    def resume(self) -> None:
        if self._job is not None:
            self._job.control.resume()

    def stop(self) -> None:
        """Stop after the current step; the run still reports its Done event."""
        if self._job is not None:
            self._job.control.stop()

    def discard(self) -> None:
        """Stop the run and never make it the model in hand (reset, or a file opened)."""
        if self._job is not None:
            self._job.discarded = True
            self._job.control.stop()

    def reset(self) -> None:
        """Forget the model in hand: the next run starts from fresh weights."""
        self.discard()
        self.current.set(None)

    @Slot(object)
    def _on_event(self, event) -> None:
        from playground.engine.events import Done, Eval, Sample, Started, Step
        job = self._job
        if isinstance(event, Done):
            job.done = event  # announced once the worker has finished, in _on_finished
            return
        if job.discarded:  # reset or replaced: what it still reports belongs to no model
            return
        if isinstance(event, Started):
            self.current.set(TrainedModel(job.trainer))
        signal = {Started: self.started, Step: self.stepped, Eval: self.evaluated,
                  Sample: self.sampled}[type(event)]
        signal.emit(event)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        doing = "Fine-tuning" if self._job is not None and self._job.adapt is not None else "Training"
        self.failed.emit(f"{doing} could not run: {message}")

    @Slot()
    def _on_finished(self) -> None:
        self._running = False
        self.ended.emit(self._job.done)


def _logged(trainer, job: _Job, board_root: Optional[str]):
    """The run's events (on the worker), also written as TensorBoard files when asked."""
    from playground.engine.training.tensorboard_log import for_trainer, logged
    board = for_trainer(board_root, trainer) if board_root else None
    job.board = board and board.folder
    yield from logged(trainer.run(job.control), board)


def describe_run(m: ModelConfig, t: TrainConfig) -> str:
    """A run's settings in a few words."""
    tokens = "" if t.tokenizer == "char" else f", BPE {t.bpe_vocab}"
    return (f"{m.n_layer}x{m.n_embd}, {m.n_head} heads, block {m.block_size}, lr {t.learning_rate:g}"
            f", {t.max_steps:,} steps{tokens}")


def changed_settings(model: ModelConfig, asked: ModelConfig) -> list[str]:
    """The settings that shape a model and differ between the two, in words ('layers 2 -> 3');
    the vocabulary is not one of them (it comes from the corpus)."""
    import dataclasses
    out = []
    for f in dataclasses.fields(ModelConfig):
        if f.name == "vocab_size":
            continue
        a, b = getattr(model, f.name), getattr(asked, f.name)
        if a != b:
            out.append(f"{f.metadata['label']} {a} -> {b}")
    return out
