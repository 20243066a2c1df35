"""Hold an export to our model: log-probabilities on seeded random ids and on windows of the
model's own text, greedy decoding from the same prompt, and the tokenizer's ids and text on the
same strings."""

from __future__ import annotations

from typing import Callable

import torch

from playground.engine.config import SampleConfig
from playground.engine.data.tokenizer import Tokenizer
from playground.engine.model.generation import start_ids, stream_tokens
from playground.engine.model.gpt import GPT
from playground.export.report import ExportError

GREEDY_TOKENS = 20
Logits = Callable[[torch.Tensor], torch.Tensor]  # ids (B, T) -> logits (B, T, V)


def shapes(model: GPT) -> list[tuple[int, int]]:
    """(batch, length) of the random batches: the whole block, a shorter one, and for rotary
    positions a longer one, where the attention window starts to slide."""
    block = model.config.block_size
    out = [(2, block), (3, max(1, block // 2))]
    if model.config.position == "rope":
        out.append((2, block + min(block, 16)))
    return out


def own_text(model: GPT, tokenizer: Tokenizer, start_char, seeds: tuple = (0, 1)) -> torch.Tensor:
    """Real windows: a block of the model's own writing per seed (temperature 1, from the
    training text's first character), ids (len(seeds), block)."""
    prompt = start_ids(tokenizer, start_char)[: model.config.block_size]
    n = model.config.block_size - len(prompt)
    rows = []
    for seed in seeds:
        config = SampleConfig(max_new_tokens=max(n, 1), temperature=1.0, seed=seed)
        ids = prompt + [t.id for t in stream_tokens(model, tokenizer, tokenizer.decode(prompt), config)]
        rows.append(ids[: model.config.block_size])
    return torch.tensor(rows)


@torch.no_grad()
def max_logprob_error(model: GPT, theirs: Logits, seed: int = 0, own: torch.Tensor | None = None,
                      within_block: bool = False) -> float:
    """The largest |log-softmax(ours) - log-softmax(theirs)| over seeded random batches and,
    when given, windows of real text (`own`: ids (B, T)); within_block: no batch longer than
    the block (for a file whose runtime cannot slide the window as ours does)."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        worst = 0.0
        batches = [torch.randint(0, model.config.vocab_size, (B, T), generator=generator)
                   for B, T in shapes(model) if not within_block or T <= model.config.block_size]
        for ids in batches + ([own] if own is not None else []):
            ours = model(ids)[0].double().log_softmax(-1)
            other = theirs(ids).double().log_softmax(-1)
            if other.shape != ours.shape:
                raise ExportError(f"the export gives logits of shape {tuple(other.shape)} for "
                                  f"{tuple(ids.shape)} ids; expected {tuple(ours.shape)}")
            worst = max(worst, float((ours - other).abs().max()))
    finally:
        model.train(was_training)
    return worst


def greedy_plan(model: GPT, tokenizer: Tokenizer, start_char) -> tuple[list[int], int]:
    """The prompt (the training text's first character) and how many tokens to generate:
    learned positions stop at the end of the block, where ours would start cropping."""
    prompt = start_ids(tokenizer, start_char)
    n = GREEDY_TOKENS
    if model.config.position == "learned":
        n = min(n, model.config.block_size - len(prompt))
    return prompt, max(n, 0)


def greedy_ours(model: GPT, tokenizer: Tokenizer, prompt: list[int], n: int) -> list[int]:
    config = SampleConfig(max_new_tokens=n, temperature=0.0)
    return [t.id for t in stream_tokens(model, tokenizer, tokenizer.decode(prompt), config)] if n else []


@torch.no_grad()
def greedy_logits(theirs: Logits, prompt: list[int], n: int, window: int | None) -> list[int]:
    """Greedy decoding by re-running the whole context (the last `window` ids, if given)."""
    ids = list(prompt)
    for _ in range(n):
        context = ids[-window:] if window else ids
        ids.append(int(theirs(torch.tensor([context]))[0, -1].argmax()))
    return ids[len(prompt):]


@torch.no_grad()
def greedy_transformers(hf_model, prompt: list[int], n: int) -> list[int]:
    if not n:
        return []
    ids = torch.tensor([prompt])
    out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                            max_new_tokens=n, min_new_tokens=n, top_k=None, temperature=None,
                            pad_token_id=0)
    return out[0, len(prompt):].tolist()


def same_text(ours: str, theirs: str) -> bool:
    """Equal, allowing for the end: a token that stops halfway through a character is held back
    by our decoder and shown as U+FFFD by tokenizers'."""
    return ours == theirs or ours == theirs.rstrip("\ufffd")


def sample_texts(tokenizer: Tokenizer, seed: int = 0) -> list[str]:
    """Texts the exported tokenizer must encode as ours does: every character of a character
    vocabulary with unknown ones mixed in, text decoded from random ids, and some Unicode."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, tokenizer.vocab_size, (64,), generator=generator).tolist()
    texts = [tokenizer.decode(ids), "hello, world\n\n  two  spaces\tand é, ü, ☃ and 😀\n"]
    if tokenizer.kind == "char":
        texts.insert(0, "".join(tokenizer.chars) + "\x00\u2603" + "".join(reversed(tokenizer.chars)))
    return texts


def check_tokenizer(tokenizer: Tokenizer, encode: Callable[[str], list[int]],
                    decode: Callable[[list[int]], str]) -> None:
    """Raise ExportError where the exported tokenizer disagrees with ours."""
    for text in sample_texts(tokenizer):
        ours, theirs = tokenizer.encode_lenient(text).ids, encode(text)
        if ours != theirs:
            raise ExportError(f"the exported tokenizer encodes {text[:40]!r} differently "
                              f"({theirs[:10]} instead of {ours[:10]})")
        if not same_text(tokenizer.decode(ours), decode(ours)):
            raise ExportError(f"the exported tokenizer decodes the ids of {text[:40]!r} differently")
