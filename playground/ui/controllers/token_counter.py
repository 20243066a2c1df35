"""Counts a corpus's BPE tokens on a worker for the settings panel: training a BPE on a
megabyte takes a second or two, which the GUI thread must not wait for. One count runs at a
time; what was asked for meanwhile is counted next, and every result is remembered."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal, Slot

from playground.ui.controllers.workers import WorkerPool


class TokenCounter(QObject):
    counted = Signal()     # a count arrived in `counts`
    failed = Signal(str)   # why it could not be counted

    def __init__(self, workers: Optional[WorkerPool], parent: Optional[QObject] = None):
        super().__init__(parent)
        self.workers = workers
        self.counts: dict[tuple, tuple[int, int]] = {}   # key -> (tokens, vocabulary size)
        self._running: Optional[tuple] = None
        self._next: Optional[tuple] = None

    def count(self, key: tuple, text: str, vocab: int, val_fraction: float) -> bool:
        """Count text's tokens under a BPE of this size trained as a run would train it (on
        the training part); False when there is no worker pool to count on."""
        if self.workers is None:
            return False
        if self._running is not None:
            self._next = (key, text, vocab, val_fraction)
            return True
        self._running = key

        def run():
            from playground.engine.data.bpe import BPETokenizer
            from playground.engine.data.corpus import split_sizes
            n_train, _ = split_sizes(len(text), val_fraction, 1)
            tokenizer = BPETokenizer.train(text[:n_train], vocab)
            yield key, len(tokenizer.encode_array(text)), tokenizer.vocab_size

        self.workers.run(run, "token count", self._done, self._error, self._finished)
        return True

    @Slot(object)
    def _done(self, result: tuple) -> None:
        key, tokens, vocab = result
        self.counts[key] = (tokens, vocab)

    @Slot(str)
    def _error(self, message: str) -> None:
        self.failed.emit(f"could not count the tokens: {message}")

    @Slot()
    def _finished(self) -> None:
        done, self._running = self._running, None
        waiting, self._next = self._next, None
        if waiting is not None and waiting[0] not in self.counts:
            self.count(*waiting)
        if done in self.counts:
            self.counted.emit()
