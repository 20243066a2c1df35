"""The Preferences view's models: the preference set being rated (pairs, ties and skips counted,
opened and saved as JSON Lines by the engine's read_pairs / write_pairs), and the controller that
writes two continuations of a prompt on a worker and tunes the model in hand by preference (DPO)
on one, the tuned model becoming the model in hand when the run ends."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import QObject, Signal, Slot

from playground.engine.config import AdaptConfig, PreferenceConfig, SampleConfig, TrainConfig
from playground.engine.errors import ConfigError, PromptError
from playground.engine.training.control import TrainControl

# (pairs.py needs no torch: the window is on screen before torch loads, ui/app.py)
from playground.engine.training.pairs import Pair, parse_pairs, read_pairs, write_pairs
from playground.ui.controllers.model_in_hand import CurrentModel, OpenedModel
from playground.ui.controllers.workers import WorkerPool


class PreferenceSet(QObject):
    """The pairs rated so far (prompt, chosen, rejected), with the ties and skips counted (they add
    no pair), the file it was opened from or saved to, and whether it changed since."""

    changed = Signal()

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.pairs: list[Pair] = []
        self.ties = self.skips = 0
        self.path: Optional[Path] = None
        self.unsaved = False   # a pair added, edited or deleted since it was new, opened or saved

    def counts(self) -> str:
        """'12 pairs, 3 ties, 2 skipped' (and 'not saved' when it changed since)."""
        n = len(self.pairs)
        words = f"{n} pair{'s' * (n != 1)}, {self.ties} tie{'s' * (self.ties != 1)}, {self.skips} skipped"
        return words + (", not saved" if self.unsaved and n else "")

    def add(self, prompt: str, chosen: str, rejected: str) -> None:
        self.pairs.append(Pair(prompt, chosen, rejected))
        self._touched()

    def tie(self) -> None:
        self.ties += 1
        self.changed.emit()

    def skip(self) -> None:
        self.skips += 1
        self.changed.emit()

    def remove(self, row: int) -> None:
        del self.pairs[row]
        self._touched()

    def edit(self, row: int, field: str, text: str) -> str:
        """Change one field of a pair; '' when done, else why not (the engine's rule for a line of
        a pairs file: no empty completion, chosen and rejected not the same), and nothing changes."""
        edited = replace(self.pairs[row], **{field: text})
        try:
            parse_pairs(json.dumps(edited.to_dict()), f"pair {row + 1}")
        except ConfigError as exc:
            return str(exc).replace(", line 1", "")
        self.pairs[row] = edited
        self._touched()
        return ""

    def open(self, path) -> None:
        """The pairs of a JSON Lines file replace these; ConfigError (naming the line) leaves
        these as they were. The caller asks first when these are not saved."""
        pairs = read_pairs(path)
        self.pairs, self.ties, self.skips = [replace(p, line=0) for p in pairs], 0, 0
        self.path, self.unsaved = Path(path), False
        self.changed.emit()

    def save(self, path) -> Path:
        """Write the pairs (atomically); ConfigError when there are none, OSError from the disk."""
        if not self.pairs:
            raise ConfigError("there are no pairs to save yet: pick the better of two continuations first")
        self.path = write_pairs(path, self.pairs)
        self.unsaved = False
        self.changed.emit()
        return self.path

    def _touched(self) -> None:
        self.unsaved = True
        self.changed.emit()


@dataclass(frozen=True)
class TuneRequest:
    """What the Tune by preference form asks for."""

    train: TrainConfig
    pref: PreferenceConfig
    adapt: AdaptConfig


class _Tuning:
    """One preference run: its stop flag, what it started from and, once it has ended on the
    worker, the tuned model (written by the worker before it finishes, read after)."""

    def __init__(self, started_from):
        self.control = TrainControl()
        self.started_from = started_from   # the model in hand when it started
        self.result = None                 # the tuned Checkpoint
        self.done = None


class PreferenceController(QObject):
    shown = Signal(object)        # (prompt, left text, right text)
    started = Signal(object)      # engine Started
    stepped = Signal(object)      # engine Step
    evaluated = Signal(object)    # engine PreferenceEval
    noted = Signal(str)           # what the run will not measure (no original text known)
    ended = Signal(object)        # engine Done, or None when the run failed
    writeFailed = Signal(str)     # why two continuations could not be written
    failed = Signal(str)          # why a tuning could not run

    def __init__(self, current: CurrentModel, workers: WorkerPool, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.current, self.workers = current, workers
        self.writing = False
        self._tuning: Optional[_Tuning] = None
        # asked when the run ends and the model in hand is no longer the one it started from
        # (it was replaced meanwhile): True when the tuned model may replace it
        self.may_replace: Callable[[], bool] = lambda: True

    @property
    def tuning(self) -> bool:
        return self._tuning is not None

    # -- two continuations -----------------------------------------------------------------
    def show_two(self, prompt: str, cfg: SampleConfig, seeds: tuple[int, int]) -> bool:
        """Write two continuations of the prompt with the same settings and two seeds, on a worker;
        each is cut to what fits the model's block after the prompt, so the pair can be tuned on.
        An empty prompt starts from the model's first character. False (said in `failed`) when
        nothing can be written now."""
        value = self.current.value
        if value is None:
            self.writeFailed.emit("There is no model to rate yet: train one or open a model file first")
            return False
        if self.writing:
            return False
        from playground.engine.model.generation import prepare_prompt, start_ids
        tokenizer, block = value.tokenizer, value.config.block_size
        try:
            ids = prepare_prompt(tokenizer, prompt).ids or start_ids(tokenizer, value.start_char)
        except PromptError as exc:
            self.writeFailed.emit(f"Cannot write: {exc}")
            return False
        if len(ids) >= block:
            self.writeFailed.emit(f"The prompt is {len(ids)} tokens and the model sees {block} at once: shorten it, "
                             "so that a continuation fits after it")
            return False
        used = tokenizer.decode(ids)
        cfg = cfg.replace(max_new_tokens=block + 1 - len(ids))

        def run():
            from playground.engine.model.generation import generate_many
            texts = generate_many(value.snapshot(), tokenizer, [used, used],
                                  [cfg.replace(seed=s) for s in seeds], value.start_char)
            yield used, texts[0], texts[1]

        self.writing = True
        self.workers.run(run, "preference pair", self.shown, self._write_failed, self._written)
        return True

    @Slot(str)
    def _write_failed(self, message: str) -> None:
        self.writeFailed.emit(f"Could not write the two continuations: {message}")

    @Slot()
    def _written(self) -> None:
        self.writing = False

    # -- tuning ------------------------------------------------------------------------------
    def tune(self, pairs: list[Pair], request: TuneRequest, name: str) -> bool:
        """Tune a copy of the model in hand on the pairs, on a worker; it becomes the model in
        hand when the run ends (stopped or not). The caller asks first whether the model in hand
        may be replaced."""
        value = self.current.value
        if value is None or self._tuning is not None:
            return False
        base = value.checkpoint()  # a trained model's is a copy; an opened one's stays as it is
        job = self._tuning = _Tuning(value)

        def run():
            from playground.engine.training.preference import prepare_preference
            trainer, note = prepare_preference(base, pairs, request.train, request.pref, request.adapt, name=name)
            if note:
                yield note
            if job.control.stopped:
                return
            yield from trainer.run(job.control)
            job.result = trainer.checkpoint()

        self.workers.run(run, "preference tuning", self._on_event, self._on_error, self._on_finished)
        return True

    def stop(self) -> None:
        """End the run after the current step; what it tuned so far is kept."""
        if self._tuning is not None:
            self._tuning.control.stop()

    @Slot(object)
    def _on_event(self, event) -> None:
        from playground.engine.events import Done, PreferenceEval, Started, Step
        if isinstance(event, str):
            self.noted.emit(event)
        elif isinstance(event, Done):
            self._tuning.done = event   # announced once the worker has finished
        else:
            {Started: self.started, Step: self.stepped, PreferenceEval: self.evaluated}[type(event)].emit(event)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        self.failed.emit(f"Tuning by preference could not run: {message}")

    @Slot()
    def _on_finished(self) -> None:
        job, self._tuning = self._tuning, None
        if job.result is not None and (self.current.value is job.started_from or self.may_replace()):
            self.current.set(OpenedModel(job.result))
            self.current.unsaved = True   # made here, in no file yet
        self.ended.emit(job.done if job.result is not None else None)
