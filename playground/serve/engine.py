"""The server's engine: one thread owns the model and advances every active request together,
one token each per tick, so the web server's event loop never computes. A rotary model's
requests share one batched step (BatchRingDecoder); a learned-position model batches the
requests whose context fills the block. A lone request decodes exactly as `generate` does."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from playground.engine.config import SampleConfig
from playground.engine.decode import BATCH, BatchRingDecoder, Decoder
from playground.engine.sample import draw, draw_from, filter_probs, start_ids
from playground.engine.tokenizer import TextStream
from playground.serve.stops import StopFilter


@dataclass(frozen=True)
class TokenInfo:
    """One generated token's log-probability and its likeliest alternatives, as the client sees
    them: `token` is its text (a byte that is not a whole character written as <0xE2>),
    `data` its bytes, `chars` the characters it added to the output."""
    token: str
    logprob: float
    top: tuple                  # (token, logprob, bytes) of the alternatives, likeliest first
    data: bytes
    chars: int


@dataclass(frozen=True)
class Piece:
    """Text ready for the client, with the tokens it is made of and their log-probabilities."""
    text: str
    tokens: tuple = ()          # TokenInfo per token, when log-probabilities were asked for


@dataclass(frozen=True)
class Finished:
    reason: str                 # "stop" | "length" | "cancelled" | "error"
    prompt_tokens: int
    completion_tokens: int
    message: str = ""


@dataclass
class Job:
    """One request: its prompt ids, settings, and where its output goes (on_event is called
    on the engine thread and must hand over thread-safely)."""
    ids: list[int]
    max_tokens: int
    config: SampleConfig
    on_event: Callable[[object], None]
    stop: tuple[str, ...] = ()
    logprobs: Optional[int] = None  # report each token's logprob and this many alternatives
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)


class _Slot:
    def __init__(self, job: Job, tokenizer, start_char: Optional[str]):
        self.job, self.ids = job, list(job.ids)
        self.generator = torch.Generator().manual_seed(job.config.seed)
        self.stops = StopFilter(job.stop)
        self.produced = 0
        self.prompt_tokens = len(job.ids)
        self.decoder: Optional[Decoder] = None
        self.row: Optional[int] = None     # its row in the batch, once it joined
        self.last_token_at: Optional[float] = None
        self.text = TextStream(tokenizer)  # ids -> text, never half a character
        # like generate: an empty prompt starts with the corpus's first character, as if sampled
        self.certain = [] if self.ids else start_ids(tokenizer, start_char)
        self.ids += self.certain


class Engine:
    def __init__(self, model, tokenizer, start_char: Optional[str] = None, max_concurrent: int = 8,
                 max_queue: int = 64, metrics=None, batched: bool = True):
        self.model, self.tokenizer, self.start_char = model.eval(), tokenizer, start_char
        self.max_concurrent, self.max_queue, self.metrics = max_concurrent, max_queue, metrics
        cfg = model.config
        self.block = cfg.block_size
        self.rolling = cfg.position == "rope"
        use_batch = batched and BATCH.applies(cfg, next(model.parameters()).device)
        self.batch = BatchRingDecoder(model, max_concurrent) if use_batch else None
        self.batch_windows = batched and not self.rolling  # learned: full windows go together
        self._pending: list[Job] = []
        self._active: list[_Slot] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="serve-engine", daemon=True)

    # -- requests in --------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Queue a request; False when the queue is full (the caller answers 503)."""
        with self._cond:
            if self._stopping or len(self._pending) >= self.max_queue:
                return False
            self._pending.append(job)
            self._gauges()
            self._cond.notify()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the requests in flight and queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    @property
    def busy(self) -> int:
        return len(self._active) + len(self._pending)

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_num_threads(1)  # batch-1 decoding is fastest on one thread (the threads bench)
        while True:
            with self._cond:
                while not (self._pending or self._active or self._stopping):
                    self._cond.wait()
                if self._stopping and not (self._pending or self._active):
                    return
                while self._pending and len(self._active) < self.max_concurrent:
                    self._active.append(_Slot(self._pending.pop(0), self.tokenizer, self.start_char))
                self._gauges()
            try:
                self._tick()
            except Exception as exc:  # a broken model must not hang its requests
                for slot in list(self._active):
                    self._finish(slot, "error", f"generation failed: {type(exc).__name__}: {exc}")

    def _tick(self) -> None:
        for slot in [s for s in self._active if s.job.cancelled.is_set()]:
            self._finish(slot, "cancelled")
        new = [s for s in self._active if s.decoder is None and s.row is None]
        for slot in new:  # prefill each new prompt alone, as generate does
            slot.decoder = Decoder(self.model)
            if slot.certain:
                for first in slot.certain:
                    certain = torch.full((self.tokenizer.vocab_size,), -torch.inf)
                    certain[first] = 0.0
                    if slot in self._active:  # max_tokens may end it within these
                        self._emit(slot, first, certain if slot.job.logprobs is not None else None)
            else:
                self._advance(slot, slot.decoder.next_logits(slot.ids))
        rest = [s for s in self._active if s not in new]
        self._advance_all(self._decode(rest))

    def _decode(self, slots: list[_Slot]) -> list[tuple[_Slot, torch.Tensor]]:
        """Next-token logits for each slot: together where the model allows, else one by one."""
        if self.batch is not None and len(self._active) > 1:
            for slot in slots:
                if slot.row is None and slot.decoder.cache is not None:  # joins with its prefilled ring
                    slot.row, slot.decoder = self.batch.add(slot.decoder.cache), None
        batched = [s for s in slots if s.row is not None]
        out = []
        if batched:
            by_row = sorted(batched, key=lambda s: s.row)
            logits = self.batch.step([s.ids[-1] for s in by_row])
            out += list(zip(by_row, logits))
        full = [s for s in slots if s.row is None and self.batch_windows and len(s.ids) > self.block]
        if len(full) > 1:  # learned positions: whole windows, all in one forward
            with torch.no_grad():
                x = torch.tensor([s.ids[-self.block:] for s in full])
                logits, _ = self.model(x, last_only=True)
            out += list(zip(full, logits[:, -1]))
        done = {id(s) for s, _ in out}
        out += [(s, s.decoder.next_logits(s.ids)) for s in slots if id(s) not in done]
        return out

    def _advance(self, slot: _Slot, logits: torch.Tensor) -> None:
        cfg = slot.job.config
        probs = filter_probs(logits, cfg.temperature, cfg.top_k, cfg.top_p)
        token = draw(probs, cfg.temperature, slot.generator)
        slot.ids.append(token)
        wanted = slot.job.logprobs is not None
        self._emit(slot, token, logits.float().log_softmax(-1) if wanted else None)

    def _advance_all(self, pairs: list[tuple[_Slot, torch.Tensor]]) -> None:
        """Every slot's next token. Rows that only scale by a temperature share one softmax,
        with the very arithmetic filter_probs does on each row alone."""
        by_temperature: dict[float, list] = {}
        for slot, logits in pairs:
            cfg = slot.job.config
            if cfg.top_k == 0 and cfg.top_p >= 1.0 and slot.job.logprobs is None:
                by_temperature.setdefault(cfg.temperature, []).append((slot, logits))
            else:
                self._advance(slot, logits)
        for temperature, members in by_temperature.items():
            logits = torch.stack([row for _, row in members]).float()
            if temperature > 0 and temperature != 1:
                logits = (logits - logits.max(-1, keepdim=True).values) / max(temperature, 1e-6)
            for (slot, _), probs in zip(members, torch.softmax(logits, dim=-1).tolist()):
                token = draw_from(probs, temperature, slot.generator)
                slot.ids.append(token)
                self._emit(slot, token, None)

    def _emit(self, slot: _Slot, token: int, logprobs: Optional[torch.Tensor]) -> None:
        now = time.perf_counter()
        m = self.metrics
        if m is not None:
            if slot.last_token_at is None:
                m.time_to_first_token.observe(now - slot.job.submitted)
            else:
                m.time_between_tokens.observe(now - slot.last_token_at)
            m.tokens.inc()
        slot.last_token_at = now
        slot.produced += 1
        piece = slot.text.push(token)
        info = None
        if slot.job.logprobs is not None:
            tok = self.tokenizer
            top = torch.topk(logprobs, min(slot.job.logprobs, logprobs.numel()))
            info = TokenInfo(tok.label(token), float(logprobs[token]),
                             tuple((tok.label(i), float(v), tok.token_bytes(i))
                                   for v, i in zip(top.values.tolist(), top.indices.tolist())),
                             tok.token_bytes(token), len(piece))
        text, stopped, held = slot.stops.feed(piece, info)
        if text:
            slot.job.on_event(Piece(text, held))
        if stopped:
            self._finish(slot, "stop")
        elif slot.produced >= slot.job.max_tokens:
            text, held = slot.stops.flush()
            if text:
                slot.job.on_event(Piece(text, held))
            self._finish(slot, "length")

    def _finish(self, slot: _Slot, reason: str, message: str = "") -> None:
        if slot not in self._active:
            return
        if slot.row is not None:
            moved = self.batch.remove(slot.row)
            for other in self._active:
                if moved is not None and other.row == moved:
                    other.row = slot.row
        with self._cond:
            self._active.remove(slot)
            self._gauges()
        m = self.metrics
        if m is not None:
            (m.cancelled if reason == "cancelled" else m.finished.labels(reason)).inc()
            m.request_seconds.observe(time.perf_counter() - slot.job.submitted)
        slot.job.on_event(Finished(reason, slot.prompt_tokens, slot.produced, message))

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.running.set(len(self._active))
            self.metrics.waiting.set(len(self._pending))
