"""Looking inside the model in hand (the Inside dock): the logit lens, where a text surprises it,
the embedding map and the induction scores, each read on a worker from a copy of the model taken
between training steps. One reading of a kind runs at a time; asked again meanwhile, the latest
request runs when it ends, so evaluations that come fast never pile up work."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Callable, Optional

from PySide6.QtCore import QObject, Signal, Slot

from playground.ui.controllers.model_in_hand import CurrentModel
from playground.ui.controllers.workers import WorkerPool

KINDS = ("lens", "surprise", "embeddings", "induction")


@dataclass(frozen=True)
class Reading:
    """What a worker hands back: plain values only."""
    kind: str          # one of KINDS
    step: int          # the training step of the weights read
    result: object     # the engine's Lens, Surprise, EmbeddingMap or Induction
    pieces: tuple = ()  # surprise: the text each token adds, in order (they join to the text read)


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds (a BPE token holding part of a character adds it when the
    character completes), so the pieces join to the text and a place in it finds its token."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(tokenizer.token_bytes(i)) for i in ids]


class InsideController(QObject):
    ready = Signal(object)    # a Reading
    failed = Signal(object)   # (kind, a readable message): the view says it in its own words

    def __init__(self, current: CurrentModel, workers: WorkerPool, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.current, self.workers = current, workers
        self._busy: dict[str, bool] = {k: False for k in KINDS}
        self._again: dict[str, Optional[Callable[[], None]]] = {k: None for k in KINDS}
        self.started = 0   # readings started, all kinds: tests check that hidden views cost nothing

    def busy(self, kind: str) -> bool:
        return self._busy[kind]

    # -- the four readings ---------------------------------------------------------------
    def lens(self, prompt: str) -> bool:
        def read(model, tokenizer):
            from playground.engine.analysis.interpret import logit_lens
            return logit_lens(model, tokenizer, prompt), ()
        return self._read("lens", read, lambda: self.lens(prompt))

    def surprise(self, text: str) -> bool:
        def read(model, tokenizer):
            from playground.engine.analysis.interpret import surprise
            found = surprise(model, tokenizer, text)
            return found, tuple(token_pieces(tokenizer, tokenizer.encode(text)))
        return self._read("surprise", read, lambda: self.surprise(text))

    def embeddings(self, previous=None) -> bool:
        """previous: the last map shown, so each axis keeps its sign from frame to frame."""
        def read(model, tokenizer):
            from playground.engine.analysis.interpret import embedding_map
            return embedding_map(model, tokenizer, previous), ()
        return self._read("embeddings", read, lambda: self.embeddings(previous))

    def induction(self) -> bool:
        def read(model, tokenizer):
            from playground.engine.analysis.interpret import induction
            return induction(model, tokenizer), ()
        return self._read("induction", read, self.induction)

    # -- running them ---------------------------------------------------------------------
    def _read(self, kind: str, read, again: Callable[[], None]) -> bool:
        """Start a reading on a worker; False when there is no model, or one of this kind is
        running (this request then runs when it ends, replacing any earlier one)."""
        in_hand = self.current.value
        if in_hand is None:
            return False
        if self._busy[kind]:
            self._again[kind] = again
            return False
        self._busy[kind] = True
        self.started += 1

        def run():
            snapshot = in_hand.snapshot()   # a copy: training goes on while this reads it
            step = in_hand.step
            result, pieces = read(snapshot, in_hand.tokenizer)
            yield Reading(kind, step, result, pieces)

        done = getattr(self, f"_{kind}_done")
        self.workers.run(run, f"inside {kind}", self.ready, getattr(self, f"_{kind}_failed"), done)
        return True

    def _finished(self, kind: str) -> None:
        self._busy[kind] = False
        again, self._again[kind] = self._again[kind], None
        if again is not None:
            again()

    # one bound slot per kind and outcome: lambdas are not connected across threads
    @Slot()
    def _lens_done(self) -> None:
        self._finished("lens")

    @Slot()
    def _surprise_done(self) -> None:
        self._finished("surprise")

    @Slot()
    def _embeddings_done(self) -> None:
        self._finished("embeddings")

    @Slot()
    def _induction_done(self) -> None:
        self._finished("induction")

    @Slot(str)
    def _lens_failed(self, message: str) -> None:
        self.failed.emit(("lens", message))

    @Slot(str)
    def _surprise_failed(self, message: str) -> None:
        self.failed.emit(("surprise", message))

    @Slot(str)
    def _embeddings_failed(self, message: str) -> None:
        self.failed.emit(("embeddings", message))

    @Slot(str)
    def _induction_failed(self, message: str) -> None:
        self.failed.emit(("induction", message))
