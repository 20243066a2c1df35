"""The app's model (napari-style): the current GPT, its training run and generation workers.

Views call its methods and subscribe to its signals; it holds no widgets. Engine modules that
import torch are imported inside methods, so the window paints before torch loads.
"""

from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import QObject, Signal, Slot

from playground.engine.config import ModelConfig, SampleConfig, TrainConfig
from playground.engine.control import TrainControl
from playground.ui.worker import GeneratorWorker, WorkerHandle

log = logging.getLogger(__name__)
TOP_CANDIDATES = 10
NO_MODEL = "There is no model yet: train one (or open a saved model) first"


class Session(QObject):
    trainingStarted = Signal(object)     # engine Started event
    stepped = Signal(object)             # engine Step event
    evaluated = Signal(object)           # engine Eval event
    sampled = Signal(object)             # engine Sample event
    trainingEnded = Signal(object)       # engine Done event, or None when the run failed
    tokenGenerated = Signal(object)      # (char, probability, [(char, probability), ...])
    generationEnded = Signal()
    attentionReady = Signal(object)      # (characters, maps (layers, heads, T, T) ndarray, step)
    sweepToken = Signal(object)          # (index of the temperature, char)
    sweepEnded = Signal()
    failed = Signal(str)                 # a readable message for the user
    modelChanged = Signal()              # a new, reset or opened model

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        # the current model, in a plain object: the training worker swaps in its new trainer
        # here without touching this QObject from its thread
        self._models = _Models()
        self._train: Optional[WorkerHandle] = None
        self._generate: Optional[WorkerHandle] = None
        self._retired: list[WorkerHandle] = []   # finished handles kept until their thread ends
        self._training_active = False    # set on the GUI thread: start .. worker finished
        self._generating_active = False
        self._done = None                # the Done event of the run in flight
        self._control = TrainControl()   # stop/pause flags of the current run

    # -- state --------------------------------------------------------------------------
    @property
    def trainer(self):
        """engine Trainer of the current model, once trained."""
        return self._models.trainer

    @trainer.setter
    def trainer(self, value) -> None:
        self._models.trainer = value

    @property
    def opened(self):
        """engine Checkpoint opened from a file, not yet trained."""
        return self._models.opened

    @opened.setter
    def opened(self, value) -> None:
        self._models.opened = value

    @property
    def training(self) -> bool:
        return self._training_active

    @property
    def generating(self) -> bool:
        return self._generating_active

    @property
    def has_model(self) -> bool:
        return self.trainer is not None or self.opened is not None

    def model_config(self) -> Optional[ModelConfig]:
        if self.trainer is not None:
            return self.trainer.model_cfg
        return self.opened.model_config if self.opened is not None else None

    def tokenizer(self):
        if self.trainer is not None:
            return self.trainer.corpus.tokenizer
        return self.opened.tokenizer if self.opened is not None else None

    def step(self) -> int:
        if self.trainer is not None:
            return self.trainer.step
        return int(self.opened.state.get("step", 0)) if self.opened is not None else 0

    # -- training -----------------------------------------------------------------------
    def start_training(self, corpus_name: str, text: str, model_cfg: ModelConfig,
                       train_cfg: TrainConfig) -> None:
        """Train in a worker: continue the current model when its shape and vocabulary fit,
        otherwise start a fresh one. The corpus is encoded in the worker too."""
        if self.training:
            return
        previous = self.trainer.checkpoint() if self.trainer is not None else self.opened
        control = self._control = TrainControl()
        models = self._models

        def run():
            from playground.engine.corpus import build_corpus
            from playground.engine.train import Trainer
            reuse = previous is not None and _same_shape(previous.model_config, model_cfg)
            corpus = build_corpus(corpus_name, text, train_cfg.val_fraction, model_cfg.block_size,
                                  tokenizer=previous.tokenizer if reuse else None)
            if reuse:
                trainer = Trainer.resume(previous, corpus, train_cfg)
            else:
                cfg = model_cfg.replace(vocab_size=corpus.tokenizer.vocab_size)
                trainer = Trainer(cfg, train_cfg, corpus)
            if control.stopped:  # reset or opened a file while the corpus was prepared
                return
            models.trainer, models.opened = trainer, None
            yield from trainer.run(control)

        self._training_active, self._done = True, None
        worker = GeneratorWorker(run, "training")
        worker.yielded.connect(self._on_train_event)
        worker.errored.connect(self._on_train_error)
        self._train = self._launch(worker, self._on_train_finished)

    def pause(self) -> None:
        self._control.pause()

    def resume(self) -> None:
        self._control.resume()

    @property
    def paused(self) -> bool:
        return self.training and self._control.paused

    def stop_training(self) -> None:
        """Stop after the current step; the run still reports its Done event."""
        self._control.stop()

    def reset(self) -> None:
        """Forget the current model: the next Train starts from fresh weights."""
        self.stop_training()
        self.stop_generation()
        self.trainer = None
        self.opened = None
        self.modelChanged.emit()

    @Slot(object)
    def _on_train_event(self, event) -> None:
        from playground.engine.events import Done, Eval, Sample, Started, Step
        if isinstance(event, Done):
            self._done = event  # announced once the worker has finished, in _on_train_finished
            return
        signal = {Started: self.trainingStarted, Step: self.stepped, Eval: self.evaluated,
                  Sample: self.sampled}[type(event)]
        if isinstance(event, Started) and event.first_step == 0:
            self.modelChanged.emit()
        signal.emit(event)

    @Slot(str)
    def _on_train_error(self, message: str) -> None:
        self.failed.emit(f"Training could not run: {message}")

    @Slot()
    def _on_train_finished(self) -> None:
        self._training_active = False
        self.trainingEnded.emit(self._done)

    # -- generation ---------------------------------------------------------------------
    def generate(self, prompt: str, cfg: SampleConfig) -> bool:
        """Stream characters from a snapshot of the current weights; False without a model."""
        if not self.has_model or self.generating:
            return False
        source = self._model_source()

        def run():
            from playground.engine.sample import stream_tokens
            import torch
            model, tokenizer, start, _ = source()
            for token in stream_tokens(model, tokenizer, prompt, cfg, start):
                top = torch.topk(token.probs, min(TOP_CANDIDATES, token.probs.numel()))
                candidates = [(tokenizer.chars[i], float(p))
                              for p, i in zip(top.values.tolist(), top.indices.tolist()) if p > 0]
                yield token.char, float(token.probs[token.id]), candidates

        self._generating_active = True
        worker = GeneratorWorker(run, "generation")
        worker.yielded.connect(self.tokenGenerated)
        worker.errored.connect(self._on_generate_error)
        self._generate = self._launch(worker, self._on_generate_finished)
        return True

    def _model_source(self):
        """A function, to run on a worker, giving (model, tokenizer, start char, step): a
        snapshot between training steps, or the opened model."""
        trainer, opened = self.trainer, self.opened

        def source():
            if trainer is not None:
                return trainer.snapshot(), trainer.corpus.tokenizer, trainer.start_char, trainer.step
            return opened.model, opened.tokenizer, opened.state.get("start_char"), int(opened.state.get("step", 0))
        return source

    def attention(self, text: str) -> bool:
        """Compute attention maps for the text (cropped to the block) on a worker."""
        if not self.has_model:
            return False
        source = self._model_source()

        def run():
            import torch
            from playground.engine.errors import PromptError
            model, tokenizer, _, step = source()
            ids = [tokenizer.stoi[c] for c in text if c in tokenizer.stoi][-model.config.block_size:]
            if not ids:
                raise PromptError("type a prompt made of the corpus's characters to see attention")
            maps = model.attention_maps(torch.tensor([ids]))[:, 0].numpy().copy()
            yield [tokenizer.chars[i] for i in ids], maps, step

        worker = GeneratorWorker(run, "attention")
        worker.yielded.connect(self.attentionReady)
        worker.errored.connect(self.failed)
        self._launch(worker, self._noop)
        return True

    def sweep(self, prompt: str, temperatures, cfg: SampleConfig) -> bool:
        """Generate the same prompt and seed at each temperature, one after the other."""
        if not self.has_model or self.generating:
            return False
        source = self._model_source()

        def run():
            from playground.engine.sample import stream
            model, tokenizer, start, _ = source()
            for i, t in enumerate(temperatures):
                for char in stream(model, tokenizer, prompt, cfg.replace(temperature=t), start):
                    yield i, char

        self._generating_active = True
        worker = GeneratorWorker(run, "sweep")
        worker.yielded.connect(self.sweepToken)
        worker.errored.connect(self._on_generate_error)
        self._generate = self._launch(worker, self._on_sweep_finished)
        return True

    @Slot()
    def _on_sweep_finished(self) -> None:
        self._generating_active = False
        self.sweepEnded.emit()

    @Slot()
    def _noop(self) -> None:
        pass

    def stop_generation(self) -> None:
        if self._generate is not None:
            self._generate.worker.abort()

    @Slot()
    def _on_generate_finished(self) -> None:
        self._generating_active = False
        self.generationEnded.emit()

    @Slot(str)
    def _on_generate_error(self, message: str) -> None:
        self.failed.emit(f"Generation stopped: {message}")

    # -- files --------------------------------------------------------------------------
    def save(self, path: str) -> str:
        from playground.engine import checkpoint
        if self.trainer is not None:
            ckpt = self.trainer.checkpoint()
        elif self.opened is not None:
            ckpt = self.opened
        else:
            from playground.engine.errors import CheckpointError
            raise CheckpointError("there is no model to save yet: train one first")
        return str(checkpoint.save(path, ckpt))

    def open(self, path: str):
        """Load a model file (errors are CheckpointError); stops any run first."""
        from playground.engine import checkpoint
        ckpt = checkpoint.load(path)
        self.stop_training()
        self.stop_generation()
        self.wait_for_workers(3000)
        self.trainer, self.opened = None, ckpt
        self.modelChanged.emit()
        return ckpt

    # -- threads ------------------------------------------------------------------------
    def _launch(self, worker: GeneratorWorker, on_finished) -> WorkerHandle:
        handle = WorkerHandle(worker, self)
        worker.finished.connect(on_finished)
        # a slot of this GUI-thread object, so the clean-up runs on the GUI thread
        handle.thread.finished.connect(self._forget_finished)
        self._retired.append(handle)
        handle.start()
        return handle

    @Slot()
    def _forget_finished(self) -> None:
        for handle in [h for h in self._retired if h.thread.isFinished()]:
            self._retired.remove(handle)
            if handle is self._train:
                self._train = None
            if handle is self._generate:
                self._generate = None
            handle.worker.deleteLater()
            handle.thread.deleteLater()

    def wait_for_workers(self, ms: int) -> bool:
        ok = True
        for handle in list(self._retired):
            ok = handle.stop(ms) and ok
        return ok

    def shutdown(self, ms: int = 3000) -> bool:
        """Stop every worker cooperatively and wait for the threads; True if all ended."""
        self.stop_training()
        self.stop_generation()
        return self.wait_for_workers(ms)


class _Models:
    """Plain holder of the current trainer or opened checkpoint (see Session.__init__)."""

    def __init__(self) -> None:
        self.trainer = None
        self.opened = None


def _same_shape(a: ModelConfig, b: ModelConfig) -> bool:
    keys = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
    return all(getattr(a, k) == getattr(b, k) for k in keys)
