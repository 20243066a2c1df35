"""Generation: one engine that every consumer drives (nanochat's engine.py): the command line's
`generate`, the window's typewriter, step mode, branching and temperature sweep, evaluation's
tasks, training's samples, export's checks and the server's scheduler. A batch of sequences
advances one token each per step, every sequence with its own prompt, settings, seed, stop
strings, length budget and text stream; a single sequence is a batch of one. The rules about
prompts, start tokens, budgets and stop strings live here once.

Temperature 0 is greedy; top-k and top-p trim the distribution; the context is cropped to the
block. Logits come from decoding.py: a prompt's prefill through GPT.forward, then the cached step.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from playground.engine.config import SampleConfig
from playground.engine.data.tokenizer import Encoded, TextStream, Tokenizer
from playground.engine.errors import ModelError, PromptError
from playground.engine.model.decoding import (
    CACHED_STEP,
    CachedRows,
    forward_logits,
    new_cache,
    prefill_ids,
    weights_refusal,
    window,
)
from playground.engine.model.gpt import GPT


# -- the rules -----------------------------------------------------------------------------
def prepare_prompt(tokenizer: Tokenizer, prompt: str) -> Encoded:
    """The one rule for a prompt's characters, wherever a prompt is typed (CLI, window,
    server): unknown ones are dropped and named in `Encoded.message`; a prompt that had
    characters but none the model knows raises PromptError. (A BPE model knows them all.)"""
    encoded = tokenizer.encode_lenient(prompt)
    if not encoded.ids and prompt:
        raise PromptError(f"none of the prompt's characters is in the model's vocabulary "
                          f"({encoded.unknown_list()}): type characters from its corpus")
    return encoded


def start_ids(tokenizer: Tokenizer, start_char: Optional[str]) -> list[int]:
    """What an empty prompt starts from: the training text's first character (saved with
    the model), else the first character of the vocabulary, or a newline for subwords."""
    if start_char:
        ids = tokenizer.encode_lenient(start_char).ids
        if ids:
            return ids
    return [0] if tokenizer.kind == "char" else tokenizer.encode_lenient("\n").ids


class LengthBudget:
    """When to stop: after max_new_tokens tokens when that is set, else once max_new_chars
    characters are out (the last token's text is cut to fit)."""

    def __init__(self, config: SampleConfig):
        self.tokens, self.chars = config.max_new_tokens, config.max_new_chars
        # an unfinished character waits for at most 3 more bytes: this many tokens always end
        self.cap = self.tokens or 4 * self.chars

    @property
    def spent(self) -> bool:
        return self.cap <= 0 or (not self.tokens and self.chars <= 0)

    def take(self, text: str) -> str:
        """Count one token with its text; return the part of the text that fits."""
        self.cap -= 1
        if self.tokens:
            self.tokens -= 1
            return text
        text = text[: self.chars]
        self.chars -= len(text)
        return text


class StopFilter:
    """Stop strings that never leak: text that could still turn out to be the start of a stop
    string is held back until the next tokens decide, so a reader never sees a stop string,
    whole or in part, even split across tokens. What is known of each token travels with its
    characters and leaves when they do."""

    def __init__(self, stops: tuple[str, ...] = ()):
        self.stops = tuple(s for s in stops if s)
        self.held = ""
        self.pending: deque = deque()  # [item, characters of it still held, partly shown] per held token

    def feed(self, text: str, item=None) -> tuple[str, bool, tuple]:
        """Take the next token's text; returns (text safe to show, whether a stop string ended
        the output, the items of the tokens shown)."""
        if not self.stops:  # the common case: nothing is ever held
            return text, False, (item,) if item is not None else ()
        self.held += text
        if item is not None:
            self.pending.append([item, len(text), False])
        hits = [(self.held.find(s), s) for s in self.stops if s in self.held]
        if hits:
            at = min(i for i, _ in hits)
            out = self.held[:at]
            items = self._release(at, touched=True)
            self.held, self.pending = "", deque()
            return out, True, items
        keep = max((k for s in self.stops for k in range(1, min(len(s), len(self.held) + 1))
                    if self.held.endswith(s[:k])), default=0)
        cut = len(self.held) - keep
        out, self.held = self.held[:cut], self.held[cut:]
        return out, False, self._release(cut)

    def flush(self) -> tuple[str, tuple]:
        """The output ended without a stop string: what was held back goes out."""
        out = self.held
        items = self._release(len(out), touched=True)
        self.held = ""
        return out, items

    def _release(self, n: int, touched: bool = False) -> tuple:
        """Items of the tokens whose characters are all among the next n shown (with touched:
        also a token only partly shown, before a stop string or at the end)."""
        out = []
        while self.pending and self.pending[0][1] <= n:
            item, chars, _ = self.pending.popleft()
            n -= chars
            out.append(item)
        if self.pending and (n > 0 or self.pending[0][2]):  # partly shown, now or before
            if touched:
                out.append(self.pending.popleft()[0])
            else:
                self.pending[0][1] -= n
                self.pending[0][2] = True
        return tuple(out)


def filter_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Logits (V,) -> probabilities after temperature, top-k and top-p (nucleus) filtering."""
    if logits.dtype != torch.float32:
        logits = logits.float()
    if temperature > 0 and temperature != 1:
        # shift first, so a tiny temperature sends the others to -inf and never the top to
        # inf; below 1e-6 (0 in float32 arithmetic) the result is one-hot anyway
        logits = (logits - logits.max()) / max(temperature, 1e-6)
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep a character while the mass before it is below p: the top one always stays
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        drop_sorted[0] = False  # even when top_p is below float32's smallest number (it reads as 0)
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum()
    return probs


LIST_DRAW = 2048  # candidates up to which a draw runs on Python floats (past it, in torch)


def draw(probs: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    """The next token: the likeliest at temperature 0, else a seeded draw by the inverse of
    the cumulative distribution (exact): the first token whose running total passes a uniform
    number below the total. In plain Python floats up to LIST_DRAW candidates: for a few
    hundred that costs a third of torch.multinomial's per-call overhead, which is most of a
    small model's step. Past it (a subword vocabulary of 50,257 took ~2 ms a token in Python,
    a tenth of GPT-2 small's step) the same arithmetic in torch, the same token (one case
    apart: a NaN among finite numbers at temperature 0 raises here, where Python's max may step
    over it; a softmax never leaves a lone NaN, so the engine never meets it)."""
    if probs.numel() <= LIST_DRAW:
        return draw_from(probs.tolist(), temperature, generator)
    if temperature == 0:
        token = int(probs.argmax())  # the first of equals, as draw_from's max
        if math.isfinite(float(probs[token])):
            return token
    else:
        # float64 running totals: torch adds a CPU tensor's in order, as itertools.accumulate
        # does, so they are draw_from's numbers to the bit
        totals = probs.double().cumsum(0)
        total = float(totals[-1])
        if 0 < total < math.inf:
            u = float(torch.rand((), generator=generator)) * total
            return min(int(torch.searchsorted(totals, u, right=True)), len(totals) - 1)
    raise _not_finite()


def draw_from(probs: list[float], temperature: float, generator: torch.Generator) -> int:
    """draw() on probabilities already in a list (a batch's rows become lists at once)."""
    if temperature == 0:
        token = max(range(len(probs)), key=probs.__getitem__)  # the first of equals, as argmax
        if math.isfinite(probs[token]):
            return token
    else:
        totals = list(itertools.accumulate(probs))
        if 0 < totals[-1] < math.inf:  # False for NaN too
            u = float(torch.rand((), generator=generator)) * totals[-1]
            return min(bisect.bisect_right(totals, u), len(totals) - 1)  # never a token of probability 0
    raise _not_finite()


def _not_finite() -> ModelError:
    return ModelError("this model's predictions are not finite numbers (its weights "
                      "hold inf or NaN), so it cannot write text; train it again "
                      "with a lower learning rate")


# -- what goes in and what comes out --------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One sequence to write: prompt ids (empty: it starts from the start tokens), the
    sampling settings and length budget, stop strings, whether its raw logits are wanted
    (log-probabilities), and how bytes that never become a character are shown."""
    ids: tuple
    config: SampleConfig = SampleConfig()
    stop: tuple[str, ...] = ()
    logits: bool = False
    byte_labels: bool = False   # broken bytes as <0xE2> (for people), not U+FFFD (for programs)


@dataclass(frozen=True)
class Token:
    """One sampled token of one sequence, with the distribution it was drawn from (after
    filtering). text: what the token adds to the sequence's output now: '' while a character
    is incomplete or a stop string may be starting, and earlier tokens' held text once it is
    known not to be one; piece: the characters the token itself completed (after the budget);
    released: with stop strings, the tokens whose characters `text` carries; finished: 'stop'
    or 'length' when the sequence ended with this token."""
    id: int
    text: str
    probs: torch.Tensor          # (V,) float32, sums to 1
    logits: Optional[torch.Tensor] = None   # (V,) raw, when the request asked for them
    piece: str = ""
    released: tuple = ()
    finished: Optional[str] = None


class Row:
    """A sequence being written and its own sampling state."""

    def __init__(self, request: Request, tokenizer: Tokenizer, start_char: Optional[str]):
        self.request = request
        self.config = request.config
        self.ids = list(request.ids)
        self.prompt_tokens = len(self.ids)
        self.generator = torch.Generator().manual_seed(request.config.seed)
        self.text = TextStream(tokenizer, request.byte_labels)  # ids -> text, never half a character
        self.budget = LengthBudget(request.config)
        self.stops = StopFilter(request.stop)
        # an empty prompt starts with the corpus's first character, given as if sampled
        self.certain = deque() if self.ids else deque(start_ids(tokenizer, start_char))
        self.ids += list(self.certain)
        self.produced = 0
        # how its logits come: "new" (its prompt not yet read), "step" (a row of the cached
        # step), "cache" (GPT.forward with a cache of its own), "window" (GPT.forward on the
        # window: learned positions past the block, or no cache asked for)
        self.mode = "new"
        self.cache = None
        self.slot: Optional[int] = None   # its row in the cached step
        self.finished: Optional[str] = None


class Engine:
    """A batch of sequences, one token each per step. capacity: sequences at once (the cached
    step's rows); cached=False decodes every token by the plain path (no cache: the reference
    the tests and the bench compare with). weights="int8": the cached step reads 8-bit weights
    (int8.py: faster on large models, not exact); where it cannot run, a ValueError says why."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, start_char: Optional[str] = None,
                 capacity: int = 1, cached: bool = True, weights: str = "float32"):
        self.model, self.tokenizer, self.start_char = model, tokenizer, start_char
        self.capacity, self.cached = capacity, cached
        self.block = model.config.block_size
        self.rotary = model.config.position == "rope"
        device = next(model.parameters()).device
        self.fast = cached and CACHED_STEP.applies(model.config, device)
        if weights != "float32":  # asked for by name: a refusal is an error, not a quiet fallback
            refusal = weights_refusal(model, weights) or ("" if cached else "the cache is off")
            if refusal:
                raise ValueError(refusal)
            self.batch = CachedRows(model, capacity, weights)
        else:
            try:
                self.batch = CachedRows(model, capacity) if self.fast else None
            except ValueError:  # weights it does not know (adapters being trained): GPT.forward's own cache
                self.fast, self.batch = False, None
        self.rows: list[Row] = []

    def add(self, request: Request) -> Row:
        if len(self.rows) >= self.capacity:
            raise ValueError(f"the engine writes {self.capacity} sequences at most")
        row = Row(request, self.tokenizer, self.start_char)
        if row.budget.spent:
            row.finished = "length"
        else:
            self.rows.append(row)
        return row

    def remove(self, row: Row) -> None:
        """A sequence leaves (it finished, or its reader went away)."""
        if row in self.rows:
            self.rows.remove(row)
        if row.slot is not None:
            self._leave_batch(row)
        row.cache = None

    @torch.no_grad()
    def step(self) -> list[tuple[Row, Token]]:
        """One token for every sequence; those that end with it leave the engine."""
        was_training = self.model.training  # (switching a module's mode walks all of it: only if needed)
        if was_training:
            self.model.eval()
        try:
            certain = [r for r in self.rows if r.certain]
            logits = self._logits([r for r in self.rows if not r.certain])
        finally:
            if was_training:
                self.model.train()
        out = [(row, self._certain(row)) for row in certain]
        out += self._sample(logits)
        for row, token in out:
            if token.finished:
                self.remove(row)
        return out

    # -- logits ---------------------------------------------------------------------------
    def _logits(self, rows: list[Row]) -> list[tuple[Row, torch.Tensor]]:
        """The next-token logits of each row: together where the cached step serves them,
        through GPT.forward where it cannot (a new prompt's prefill, a learned-position window
        past the block, a model setting the cached step was not verified for)."""
        out: list[tuple[Row, torch.Tensor]] = []
        stepping, windows, new = [], [], []
        for row in rows:
            if row.mode == "step" and not self.batch.fits(len(row.ids) - 1):
                self._leave_batch(row)  # the block is full: learned positions slide from now
                row.mode = "window"
            elif row.mode == "cache" and not self.rotary and len(row.ids) > self.block:
                row.mode, row.cache = "window", None
            if row.mode == "new":
                new.append(row)
            elif row.mode == "step":
                stepping.append(row)
            elif row.mode == "cache":
                out.append((row, forward_logits(self.model, row.ids[-1:], row.cache)))
            elif self.rotary:  # no cache asked for: the whole history, windowed at each layer
                out.append((row, forward_logits(self.model, window(self.model, row.ids))))
            else:
                windows.append(row)
        if stepping:  # every row of the cached step (so before new prompts join it)
            by_slot = sorted(stepping, key=lambda r: r.slot)
            out += list(zip(by_slot, self.batch.step([r.ids[-1] for r in by_slot])))
        out += [(row, self._prefill(row)) for row in new]
        if windows:  # learned positions: whole windows, all in one forward
            device = next(self.model.parameters()).device
            ids = torch.tensor([r.ids[-self.block:] for r in windows], device=device)
            logits, _ = self.model(ids, last_only=True)
            out += list(zip(windows, logits[:, -1].float().cpu()))
        return out

    def _prefill(self, row: Row) -> torch.Tensor:
        ids = prefill_ids(self.model, row.ids)
        if not self.cached or (not self.rotary and len(ids) >= self.block):
            row.mode = "window"  # (past the block, a learned-position cache has no room left)
            return forward_logits(self.model, window(self.model, row.ids))
        cache = new_cache(self.model)
        logits = forward_logits(self.model, ids, cache)
        if self.fast:
            row.mode, row.slot = "step", self.batch.add(cache)
        else:
            row.mode, row.cache = "cache", cache
        return logits

    def _leave_batch(self, row: Row) -> None:
        moved = self.batch.remove(row.slot)
        for other in self.rows:
            if moved is not None and other.slot == moved:
                other.slot = row.slot
        row.slot = None

    # -- sampling ---------------------------------------------------------------------------
    def _sample(self, pairs: list[tuple[Row, torch.Tensor]]) -> list[tuple[Row, Token]]:
        """Every row's next token. Rows that only scale by a temperature share one softmax,
        with the very arithmetic filter_probs does on each row alone."""
        out, alone = [], []
        by_temperature: dict[float, list] = {}
        for row, logits in pairs:
            cfg = row.config
            if cfg.top_k == 0 and cfg.top_p >= 1.0:
                by_temperature.setdefault(cfg.temperature, []).append((row, logits))
            else:
                alone.append((row, logits))
        for members in by_temperature.values():
            if len(members) == 1:
                alone += members
                continue
            temperature = members[0][0].config.temperature
            logits = torch.stack([row_logits for _, row_logits in members]).float()
            scaled = logits
            if temperature > 0 and temperature != 1:
                scaled = (logits - logits.max(-1, keepdim=True).values) / max(temperature, 1e-6)
            probs = torch.softmax(scaled, dim=-1)
            lists = probs.tolist() if probs.size(-1) <= LIST_DRAW else [None] * len(members)
            for (row, _), p, as_list, raw in zip(members, probs, lists, logits):
                token = draw(p, temperature, row.generator) if as_list is None else \
                    draw_from(as_list, temperature, row.generator)
                out.append((row, self._emit(row, token, p, raw)))
        for row, logits in alone:
            cfg = row.config
            probs = filter_probs(logits, cfg.temperature, cfg.top_k, cfg.top_p)
            out.append((row, self._emit(row, draw(probs, cfg.temperature, row.generator), probs, logits)))
        return out

    def _certain(self, row: Row) -> Token:
        """A start token, given with certainty."""
        first = row.certain.popleft()
        probs = torch.zeros(self.tokenizer.vocab_size)
        probs[first] = 1.0
        logits = torch.full((self.tokenizer.vocab_size,), -math.inf)
        logits[first] = 0.0
        return self._emit(row, first, probs, logits, append=False)

    def _emit(self, row: Row, token: int, probs: torch.Tensor, logits: torch.Tensor,
              append: bool = True) -> Token:
        if append:
            row.ids.append(token)
        row.produced += 1
        piece = row.budget.take(row.text.push(token))
        item = (token, logits if row.request.logits else None, piece)
        text, stopped, released = row.stops.feed(piece, item)
        finished = "stop" if stopped else "length" if row.budget.spent else None
        if finished == "length":
            rest, more = row.stops.flush()
            text, released = text + rest, released + more
        row.finished = finished
        return Token(token, text, probs, item[1], piece, released, finished)


# -- one sequence ---------------------------------------------------------------------------
def stream_tokens(model: GPT, tokenizer: Tokenizer, prompt: str = "",
                  config: SampleConfig = SampleConfig(), start_char: Optional[str] = None,
                  use_cache: bool = True, byte_labels: bool = False, weights: str = "float32") -> Iterator[Token]:
    """Yield sampled tokens one by one: an engine with one row. With an empty prompt the first
    tokens are those of start_char (the first character of the training text), with certainty."""
    config.check()
    engine = Engine(model, tokenizer, start_char, capacity=1, cached=use_cache, weights=weights)
    row = engine.add(Request(tuple(prepare_prompt(tokenizer, prompt).ids), config, byte_labels=byte_labels))
    while row.finished is None:
        for _, token in engine.step():
            yield token


def stream(model: GPT, tokenizer: Tokenizer, prompt: str = "",
           config: SampleConfig = SampleConfig(), start_char: Optional[str] = None,
           weights: str = "float32") -> Iterator[str]:
    """Yield the generated text a token at a time (a character at a time for a character
    model), never half a character."""
    for token in stream_tokens(model, tokenizer, prompt, config, start_char, weights=weights):
        if token.text:
            yield token.text


def generate(model: GPT, tokenizer: Tokenizer, prompt: str = "",
             config: SampleConfig = SampleConfig(), start_char: Optional[str] = None) -> str:
    return "".join(stream(model, tokenizer, prompt, config, start_char))


def generate_many(model: GPT, tokenizer: Tokenizer, prompts: list[str], configs: list[SampleConfig],
                  start_char: Optional[str] = None, capacity: int = 32) -> list[str]:
    """Several texts at once, in batches of `capacity` (evaluation's tasks, the sweep): each
    the same text `generate` writes for its prompt and settings alone."""
    texts = [""] * len(prompts)
    pending = deque(range(len(prompts)))
    engine = Engine(model, tokenizer, start_char, capacity=min(capacity, max(len(prompts), 1)))
    index: dict[int, int] = {}
    while pending or engine.rows:
        while pending and len(engine.rows) < engine.capacity:
            i = pending.popleft()
            try:
                ids = prepare_prompt(tokenizer, prompts[i]).ids
            except PromptError:
                continue  # nothing of it is known: it stays ''
            row = engine.add(Request(tuple(ids), configs[i]))
            index[id(row)] = i
        for row, token in engine.step():
            texts[index[id(row)]] += token.text
    return texts
