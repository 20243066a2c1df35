"""The server's scheduler: one thread owns the model's generation engine (engine/generation.py)
and advances every active request together, one token each per step, so the web server's event
loop never computes. Requests wait in a queue until the engine has a free row; the rules of
generation (start tokens, budgets, stop strings, sampling) are the engine's, so a request
decodes exactly as `generate` does."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from playground.engine.config import SampleConfig
from playground.engine.model.generation import Engine, Request, Row

FLOOR_LOGPROB = -9999.0  # a chosen token of probability 0, as vLLM gives it: JSON has no -inf


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


class Scheduler:
    """The engine decodes up to its capacity of rows together (max_concurrent; one with
    batched=False); max_queue more jobs may wait for a row. Jobs are accepted while running +
    waiting stays within the two together."""

    def __init__(self, model, tokenizer, start_char: Optional[str] = None, max_concurrent: int = 8,
                 max_queue: int = 64, metrics=None, batched: bool = True, weights: str = "float32"):
        self.model, self.tokenizer, self.start_char = model.eval(), tokenizer, start_char
        self.max_concurrent, self.max_queue, self.metrics = max_concurrent, max_queue, metrics
        # batched=False (--no-batch, to compare): one request at a time
        self.engine = Engine(model, tokenizer, start_char, capacity=max_concurrent if batched else 1,
                             weights=weights)
        self._pending: list[Job] = []
        self._running = 0    # jobs taken from the queue and not yet finished (changed under _cond)
        self._active: dict[int, tuple[Job, Row]] = {}   # id(row) -> its job and row
        self._last_token_at: dict[int, float] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="serve-engine", daemon=True)

    # -- requests in --------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, *jobs: Job) -> bool:
        """Queue a request's jobs, all or none; False when they do not fit (the caller answers
        503). Jobs whose client has gone are dropped first: they hold no place."""
        with self._cond:
            self._drop_cancelled()
            room = self.engine.capacity + self.max_queue - self._running - len(self._pending)
            if self._stopping or len(jobs) > room:
                return False
            self._pending.extend(jobs)
            self._gauges()
            self._cond.notify()
        return True

    def cancel(self, *jobs: Job) -> None:
        """The client went away: a queued job leaves the queue now, a running one at the next step."""
        for job in jobs:
            job.cancelled.set()
        with self._cond:
            self._drop_cancelled()
            self._gauges()
            self._cond.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the requests in flight and queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    @property
    def busy(self) -> int:
        return self._running + len(self._pending)

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_num_threads(1)  # batch-1 decoding is fastest on one thread (the threads bench)
        while True:
            with self._cond:
                self._drop_cancelled()
                while not (self._pending or self._active or self._stopping):
                    self._cond.wait()
                    self._drop_cancelled()
                if self._stopping and not (self._pending or self._active):
                    return
                admitted = []
                while self._pending and len(self.engine.rows) + len(admitted) < self.engine.capacity:
                    admitted.append(self._pending.pop(0))
                self._running += len(admitted)
                self._gauges()  # before their first token: whoever has read it sees them running
            try:
                for job in admitted:
                    self._admit(job)
                self._step()
            except Exception as exc:  # a broken model must not hang its requests
                for job, row in list(self._active.values()):
                    self._finish(job, row, "error", f"generation failed: {type(exc).__name__}: {exc}")
            with self._cond:
                self._gauges()

    def _drop_cancelled(self) -> None:
        """(Under _cond.) Queued jobs whose client has gone end here, as cancelled."""
        gone = [job for job in self._pending if job.cancelled.is_set()]
        if not gone:
            return
        self._pending = [job for job in self._pending if not job.cancelled.is_set()]
        for job in gone:
            self._count("cancelled", job)
            job.on_event(Finished("cancelled", len(job.ids), 0))

    def _admit(self, job: Job) -> None:
        config = job.config.replace(max_new_tokens=job.max_tokens)
        try:
            row = self.engine.add(Request(tuple(job.ids), config, job.stop, logits=job.logprobs is not None))
        except Exception as exc:  # this request alone cannot start: it alone fails
            with self._cond:
                self._running -= 1
            self._count("error", job)
            job.on_event(Finished("error", len(job.ids), 0, f"generation failed: {type(exc).__name__}: {exc}"))
            return
        self._active[id(row)] = (job, row)
        if row.finished:  # a zero budget
            self._finish(job, row, row.finished)

    def _step(self) -> None:
        for job, row in [pair for pair in self._active.values() if pair[0].cancelled.is_set()]:
            self._finish(job, row, "cancelled")
        if not self.engine.rows:
            return
        for row, token in self.engine.step():
            job, _ = self._active[id(row)]
            self._observe(job, id(row))
            infos = tuple(self._info(item, job.logprobs) for item in token.released) if job.logprobs is not None else ()
            if token.text:
                job.on_event(Piece(token.text, infos))
            if token.finished:
                self._finish(job, row, token.finished)

    def _info(self, item, alternatives: int) -> TokenInfo:
        """JSON has no -inf: alternatives of probability 0 (a start token's, given with certainty)
        are left out, and a chosen token of probability 0 is given FLOOR_LOGPROB."""
        token, logits, piece = item
        tok = self.tokenizer
        logprobs = logits.float().log_softmax(-1)
        top = torch.topk(logprobs, min(alternatives, logprobs.numel()))
        chosen = float(logprobs[token])
        return TokenInfo(tok.label(token), chosen if math.isfinite(chosen) else FLOOR_LOGPROB,
                         tuple((tok.label(i), v, tok.token_bytes(i))
                               for v, i in zip(top.values.tolist(), top.indices.tolist()) if math.isfinite(v)),
                         tok.token_bytes(token), len(piece))

    def _observe(self, job: Job, key: int) -> None:
        now = time.perf_counter()
        m = self.metrics
        if m is not None:
            last = self._last_token_at.get(key)
            if last is None:
                m.time_to_first_token.observe(now - job.submitted)
            else:
                m.time_between_tokens.observe(now - last)
            m.tokens.inc()
        self._last_token_at[key] = now

    def _finish(self, job: Job, row: Row, reason: str, message: str = "") -> None:
        if self._active.pop(id(row), None) is None:
            return
        self._last_token_at.pop(id(row), None)
        self.engine.remove(row)
        with self._cond:
            self._running -= 1
        self._count(reason, job)
        job.on_event(Finished(reason, row.prompt_tokens, row.produced, message))

    def _count(self, reason: str, job: Job) -> None:
        m = self.metrics
        if m is not None:
            (m.cancelled if reason == "cancelled" else m.finished.labels(reason)).inc()
            m.request_seconds.observe(time.perf_counter() - job.submitted)

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.running.set(self._running)
            self.metrics.waiting.set(len(self._pending))
