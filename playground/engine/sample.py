"""Sampling: a generator that yields one character at a time, like nanochat's streaming engine.

Temperature 0 is greedy; top-k and top-p trim the distribution; the context is cropped to the
block size. A KV cache serves while the context still fits in the block; after that the window
slides, every position's absolute position changes, and the plain path recomputes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from playground.engine.config import SampleConfig
from playground.engine.errors import ModelError, PromptError
from playground.engine.model import GPT, KVCache
from playground.engine.tokenizer import CharTokenizer, Encoded


@dataclass(frozen=True)
class Token:
    """One sampled character, with the distribution it was drawn from (after filtering)."""

    id: int
    char: str
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


def prepare_prompt(tokenizer: CharTokenizer, prompt: str, start_char: Optional[str]) -> Encoded:
    """Encode the prompt, dropping unknown characters; an empty prompt starts at start_char.

    Raises PromptError when the prompt had characters but none of them is known.
    """
    encoded = tokenizer.encode_lenient(prompt)
    if not encoded.ids and prompt:
        raise PromptError(f"none of the prompt's characters is in the model's vocabulary "
                          f"({encoded.message.split(';')[0].removeprefix('the model never saw ')})")
    return encoded


def stream_tokens(model: GPT, tokenizer: CharTokenizer, prompt: str = "",
                  config: SampleConfig = SampleConfig(), start_char: Optional[str] = None,
                  use_cache: bool = True) -> Iterator[Token]:
    """Yield sampled tokens one by one. With an empty prompt the first token is start_char
    (the first character of the training text), yielded as if sampled, with certainty."""
    config.check()
    encoded = prepare_prompt(tokenizer, prompt, start_char)
    ids = list(encoded.ids)
    if config.max_new_chars == 0:
        return
    if not ids:
        first = start_char if start_char in tokenizer.stoi else tokenizer.chars[0]
        ids = [tokenizer.stoi[first]]
        certain = torch.zeros(tokenizer.vocab_size)
        certain[ids[0]] = 1.0
        yield Token(ids[0], first, certain)
        if config.max_new_chars <= 1:
            return
        remaining = config.max_new_chars - 1
    else:
        remaining = config.max_new_chars
    was_training = model.training
    model.eval()
    try:
        yield from _sample_loop(model, tokenizer, ids, remaining, config, use_cache)
    finally:
        model.train(was_training)


def _sample_loop(model: GPT, tokenizer: CharTokenizer, ids: list[int], count: int,
                 config: SampleConfig, use_cache: bool) -> Iterator[Token]:
    T = model.config.block_size
    rolling = model.config.position == "rope"  # the cache never has to be dropped
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    cache: Optional[KVCache] = None
    for _ in range(count):
        if use_cache and (rolling or len(ids) <= T):
            if cache is None:  # prefill the prompt once
                cache = model.new_cache()
                feed = ids if not rolling else ids[-(T + model.config.n_layer * T):]
                logits = _forward(model, feed, device, cache)
            elif rolling and device.type == "cpu":  # one token, the lean path (no grad mode needed)
                logits = model.decode_step(ids[-1], cache)
            else:  # the cache holds every position but the newest
                logits = _forward(model, ids[-1:], device, cache)
        elif rolling:
            # the plain path of the windowed model: the whole history, windowed at each layer
            logits = _forward(model, ids, device)
        else:
            # learned positions: crop to the block, every position recomputed
            logits = _forward(model, ids[-T:], device)
        probs = filter_probs(logits, config.temperature, config.top_k, config.top_p)
        if config.temperature == 0:
            nxt = int(torch.argmax(probs))
        else:
            try:
                nxt = int(torch.multinomial(probs, 1, generator=generator))
            except RuntimeError as exc:  # torch: "probability tensor contains inf, nan..."
                raise ModelError("this model's predictions are not finite numbers (its weights "
                                 "hold inf or NaN), so it cannot write text; train it again "
                                 "with a lower learning rate") from exc
        ids.append(nxt)
        yield Token(nxt, tokenizer.chars[nxt], probs)


def _forward(model: GPT, ids: list[int], device, cache: Optional[KVCache] = None) -> torch.Tensor:
    """Last position's logits (V,) on the CPU, without recording a graph."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids], device=device), cache=cache, last_only=True)
    return logits[0, -1].cpu()


def stream(model: GPT, tokenizer: CharTokenizer, prompt: str = "",
           config: SampleConfig = SampleConfig(), start_char: Optional[str] = None) -> Iterator[str]:
    """Yield the generated text one character at a time."""
    for token in stream_tokens(model, tokenizer, prompt, config, start_char):
        yield token.char


def generate(model: GPT, tokenizer: CharTokenizer, prompt: str = "",
             config: SampleConfig = SampleConfig(), start_char: Optional[str] = None) -> str:
    return "".join(stream(model, tokenizer, prompt, config, start_char))
