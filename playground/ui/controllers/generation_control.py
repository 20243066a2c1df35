"""Generation control: streams characters, temperature sweeps and attention maps from the model
in hand on a worker (a copy taken between training steps while a run goes on)."""

from __future__ import annotations

from typing import Optional, Sequence

from PySide6.QtCore import QObject, Signal, Slot

from playground.engine.config import SampleConfig
from playground.engine.errors import PromptError
from playground.ui.controllers.model_in_hand import CurrentModel
from playground.ui.controllers.workers import GeneratorWorker, WorkerPool

TOP_CANDIDATES = 10
NO_MODEL = "There is no model yet: train one (or open a saved model) first"


def candidate(tokenizer, i: int, p: float) -> tuple[str, float, str]:
    """(label, probability, text) of a candidate token; text '' for a byte fragment, which
    cannot stand on its own in a prompt."""
    label = tokenizer.label(i)
    return label, p, label if label == tokenizer.token_bytes(i).decode("utf-8", "replace") else ""


class GenerationController(QObject):
    tokenGenerated = Signal(object)   # (text, probability, [(label, probability, text), ...], label)
    generationEnded = Signal()
    sweepStarted = Signal(str)        # the prompt every temperature continues
    sweepToken = Signal(object)       # (index of the temperature, char)
    sweepEnded = Signal()
    attentionReady = Signal(object)   # (characters, maps (layers, heads, T, T) ndarray, step)
    evaluationReady = Signal(object)  # a dict of plain figures (see evaluate)
    failed = Signal(str)              # a readable message for the user

    def __init__(self, current: CurrentModel, workers: WorkerPool, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.current, self.workers = current, workers
        self._worker: Optional[GeneratorWorker] = None
        self._generating = False  # set on the GUI thread: start .. worker finished

    @property
    def generating(self) -> bool:
        return self._generating

    def usable_prompt(self, prompt: str) -> Optional[str]:
        """The prompt's characters the model knows (the engine's one rule), or None after
        saying in `failed` why nothing can be generated now."""
        if self.current.value is None:
            self.failed.emit(NO_MODEL)
            return None
        from playground.engine.model.generation import prepare_prompt
        tokenizer = self.current.tokenizer
        try:
            return tokenizer.decode(prepare_prompt(tokenizer, prompt).ids)
        except PromptError as exc:
            self.failed.emit(f"Cannot generate: {exc}")
            return None

    def generate(self, prompt: str, cfg: SampleConfig, every_candidate: bool = False) -> bool:
        """Stream tokens with their odds (the likeliest few, or every candidate); False when
        there is no model or one is writing. Each token is (the text it adds, which is '' while
        a character is incomplete, its probability, the candidates, its label); a candidate is
        (label, probability, text), its text '' when it is a byte fragment."""
        model = self.current.value
        if model is None or self._generating:
            return False
        shown = model.tokenizer.vocab_size if every_candidate else TOP_CANDIDATES

        def run():
            import torch

            from playground.engine.model.generation import stream_tokens
            tokenizer = model.tokenizer
            for token in stream_tokens(model.snapshot(), tokenizer, prompt, cfg, model.start_char,
                                       byte_labels=True):
                top = torch.topk(token.probs, min(shown, token.probs.numel()))
                candidates = [candidate(tokenizer, i, p)
                              for p, i in zip(top.values.tolist(), top.indices.tolist()) if p > 0]
                yield token.text, float(token.probs[token.id]), candidates, tokenizer.label(token.id)

        self._start(run, "generation", self.tokenGenerated, self.generationEnded)
        return True

    def sweep(self, prompt: str, temperatures: Sequence[float], cfg: SampleConfig) -> bool:
        """The same prompt and seed at each temperature, side by side: every temperature a row
        of one generation engine, so all of them write at once."""
        model = self.current.value
        if model is None or self._generating:
            return False

        def run():
            from playground.engine.model.generation import Engine, Request, prepare_prompt
            engine = Engine(model.snapshot(), model.tokenizer, model.start_char, capacity=len(temperatures))
            ids = tuple(prepare_prompt(model.tokenizer, prompt).ids)
            rows = [engine.add(Request(ids, cfg.replace(temperature=t), byte_labels=True)) for t in temperatures]
            while engine.rows:
                for row, token in engine.step():
                    if token.text:
                        yield rows.index(row), token.text

        self.sweepStarted.emit(prompt)
        self._start(run, "sweep", self.sweepToken, self.sweepEnded)
        return True

    def attention(self, text: str) -> bool:
        """Attention maps over the text's tokens (cropped to the block), on a worker."""
        model = self.current.value
        if model is None:
            self.failed.emit(NO_MODEL)
            return False
        ids = model.tokenizer.encode_lenient(text).ids[-model.config.block_size:]
        if not ids:
            self.failed.emit("Type a prompt made of the corpus's characters to see attention")
            return False

        def run():
            import torch
            maps = model.snapshot().attention_maps(torch.tensor([ids]))[:, 0].numpy().copy()
            yield [model.tokenizer.label(i) for i in ids], maps, model.step

        self.workers.run(run, "attention", self.attentionReady, self.failed)
        return True

    def evaluate(self, text: Optional[str], tasks: tuple, label: str) -> bool:
        """Score the model in hand on a text (loss, perplexity, bits per character) and on
        tasks (accuracy), on a worker; the result arrives as plain values in evaluationReady."""
        model = self.current.value
        if model is None:
            self.failed.emit(NO_MODEL)
            return False

        def run():
            from playground.engine.analysis.evaluation import score_tasks, score_text
            snapshot = model.snapshot()
            result = {"label": label, "step": model.step}
            if text is not None:
                result["text"] = score_text(snapshot, model.tokenizer, text).to_dict()
                result["unit"] = model.tokenizer.unit
            if tasks:
                result["tasks"] = score_tasks(snapshot, model.tokenizer, list(tasks), model.start_char).to_dict()
            yield result

        self.workers.run(run, "evaluation", self.evaluationReady, self.failed)
        return True

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.abort()

    def _start(self, run, name: str, items: Signal, ended: Signal) -> None:
        self._generating = True
        self._ended = ended
        self._worker = self.workers.run(run, name, items, self._on_error, self._on_finished)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        self.failed.emit(f"Generation stopped: {message}")

    @Slot()
    def _on_finished(self) -> None:
        self._generating = False
        self._worker = None
        self._ended.emit()
