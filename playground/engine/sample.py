"""Sampling: a generator that yields one token at a time, like nanochat's streaming engine.

Temperature 0 is greedy; top-k and top-p trim the distribution; the context is cropped to the
block size. The logits come from decode.Decoder (caches and the lean step live there). Each
token comes with the text it adds (tokenizer.TextStream: a BPE token may end halfway through
a character, which then shows with the next one).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from playground.engine.config import SampleConfig
from playground.engine.decode import Decoder
from playground.engine.errors import ModelError, PromptError
from playground.engine.model import GPT
from playground.engine.tokenizer import Encoded, TextStream, Tokenizer


@dataclass(frozen=True)
class Token:
    """One sampled token, with the distribution it was drawn from (after filtering)."""

    id: int
    text: str            # what it adds to the output: '' while a character is incomplete
    probs: torch.Tensor  # (V,) float32, sums to 1


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
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum()
    return probs


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


class Budget:
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


def stream_tokens(model: GPT, tokenizer: Tokenizer, prompt: str = "",
                  config: SampleConfig = SampleConfig(), start_char: Optional[str] = None,
                  use_cache: bool = True) -> Iterator[Token]:
    """Yield sampled tokens one by one. With an empty prompt the first tokens are those of
    start_char (the first character of the training text), yielded as if sampled, with
    certainty."""
    config.check()
    ids = list(prepare_prompt(tokenizer, prompt).ids)
    budget = Budget(config)
    if budget.spent:
        return
    text = TextStream(tokenizer)
    if not ids:
        for first in start_ids(tokenizer, start_char):
            certain = torch.zeros(tokenizer.vocab_size)
            certain[first] = 1.0
            ids.append(first)
            yield Token(first, budget.take(text.push(first)), certain)
            if budget.spent:
                return
    was_training = model.training
    model.eval()
    try:
        decoder = Decoder(model, use_cache)
        generator = torch.Generator().manual_seed(config.seed)
        while not budget.spent:
            probs = filter_probs(decoder.next_logits(ids), config.temperature, config.top_k, config.top_p)
            nxt = draw(probs, config.temperature, generator)
            ids.append(nxt)
            yield Token(nxt, budget.take(text.push(nxt)), probs)
    finally:
        model.train(was_training)


def draw(probs: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    """The next token: the likeliest at temperature 0, else a seeded draw by the inverse of
    the cumulative distribution (exact): the first token whose running total passes a uniform
    number below the total. In plain Python floats: for a few hundred candidates that costs
    a third of torch.multinomial's per-call overhead, which is most of a small model's step."""
    return draw_from(probs.tolist(), temperature, generator)


def draw_from(probs: list[float], temperature: float, generator: torch.Generator) -> int:
    """draw() on probabilities already in a list (the server turns a whole batch into lists
    at once)."""
    if temperature == 0:
        token = max(range(len(probs)), key=probs.__getitem__)  # the first of equals, as argmax
        if math.isfinite(probs[token]):
            return token
    else:
        totals = list(itertools.accumulate(probs))
        if 0 < totals[-1] < math.inf:  # False for NaN too
            u = float(torch.rand((), generator=generator)) * totals[-1]
            return min(bisect.bisect_right(totals, u), len(totals) - 1)  # never a token of probability 0
    raise ModelError("this model's predictions are not finite numbers (its weights "
                     "hold inf or NaN), so it cannot write text; train it again "
                     "with a lower learning rate")


def stream(model: GPT, tokenizer: Tokenizer, prompt: str = "",
           config: SampleConfig = SampleConfig(), start_char: Optional[str] = None) -> Iterator[str]:
    """Yield the generated text a token at a time (a character at a time for a character
    model), never half a character."""
    for token in stream_tokens(model, tokenizer, prompt, config, start_char):
        if token.text:
            yield token.text


def generate(model: GPT, tokenizer: Tokenizer, prompt: str = "",
             config: SampleConfig = SampleConfig(), start_char: Optional[str] = None) -> str:
    return "".join(stream(model, tokenizer, prompt, config, start_char))
