"""Scoring a model: on a whole text, the loss, perplexity and bits per character, every token
predicted once in windows of the block size; on tasks (data/tasks.py), the share it answers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from playground.engine.config import SampleConfig
from playground.engine.data.corpus import check_text
from playground.engine.data.tasks import Task
from playground.engine.data.tokenizer import Tokenizer
from playground.engine.errors import CorpusError, PromptError
from playground.engine.model.gpt import GPT


# -- a whole text ---------------------------------------------------------------------------
@torch.no_grad()
def loss_sum(model: GPT, ids: torch.Tensor, block_size: int, batch_size: int = 64) -> tuple[float, int]:
    """(sum of the losses, number of characters predicted) over every position of ids after
    the first: consecutive windows of block_size, and one more window for the tail."""
    ids = ids.long()
    n = len(ids) - 1
    T = min(block_size, n)
    starts = list(range(0, n - T + 1, T))
    tail = n - (starts[-1] + T) if starts else n  # targets the whole windows missed
    if tail:
        starts.append(n - T)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for i in range(0, len(starts), batch_size):
            chunk = torch.tensor(starts[i:i + batch_size])
            x = ids[chunk[:, None] + torch.arange(T)]
            y = ids[chunk[:, None] + torch.arange(1, T + 1)]
            logits, _ = model(x)
            losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                     reduction="none").view(len(chunk), T)
            if tail and i + batch_size >= len(starts):  # the tail window: only its new targets
                losses[-1, : T - tail] = 0.0
            total += float(losses.sum())
    finally:
        model.train(was_training)
    return total, n


def full_loss(model: GPT, ids: torch.Tensor, block_size: int, batch_size: int = 64) -> Optional[float]:
    """Mean loss over a whole split, every character predicted once; None when the split has
    fewer than two characters. The most exact figure for a held-out tail."""
    if len(ids) < 2:
        return None
    total, n = loss_sum(model, ids, block_size, batch_size)
    return total / n


@dataclass(frozen=True)
class TextScore:
    loss: float                 # nats per token (per character, for a character model)
    tokens: int                 # tokens predicted (all but the first)
    characters: int             # the characters those tokens hold
    unknown_characters: int     # characters the model never saw: left out, and counted
    unknown: tuple[str, ...]    # which ones

    @property
    def perplexity(self) -> float:
        """Per token: how many tokens the model is effectively choosing between."""
        return math.exp(min(self.loss, 700.0))

    @property
    def bits_per_char(self) -> float:
        """The figure that compares models across tokenizers."""
        return self.loss * self.tokens / max(self.characters, 1) / math.log(2)

    def to_dict(self) -> dict:
        return {"loss": self.loss, "perplexity": self.perplexity, "bits_per_char": self.bits_per_char,
                "tokens": self.tokens, "characters": self.characters,
                "unknown_characters": self.unknown_characters, "unknown": list(self.unknown[:10])}


def score_text(model: GPT, tokenizer: Tokenizer, text: str) -> TextScore:
    """Score a text the model may not have seen; characters outside its vocabulary are left
    out of the score and reported, never silently dropped."""
    text = check_text(text)
    encoded = tokenizer.encode_lenient(text)
    if len(encoded.ids) < 2:
        raise CorpusError(f"the text has fewer than two {tokenizer.unit} the model knows: nothing to score")
    total, n = loss_sum(model, torch.tensor(encoded.ids), model.config.block_size)
    characters = len(tokenizer.decode(encoded.ids)) - len(tokenizer.decode(encoded.ids[:1]))
    return TextScore(total / n, n, characters, len(text) - len(tokenizer.decode(encoded.ids)),
                     encoded.unknown)


# -- tasks: prompts with an expected answer ---------------------------------------------
@dataclass(frozen=True)
class Answer:
    prompt: str
    expected: str
    got: str

    @property
    def correct(self) -> bool:
        return self.got.startswith(self.expected)


@dataclass(frozen=True)
class TaskScore:
    total: int
    correct: int
    failures: tuple[Answer, ...]    # a few wrong answers, to look at

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {"total": self.total, "correct": self.correct, "accuracy": self.accuracy,
                "failures": [asdict(a) for a in self.failures]}


def answer(model, tokenizer, task: Task, start_char: Optional[str] = None) -> Answer:
    """The model's greedy completion, as long as the expected answer."""
    from playground.engine.model.generation import generate
    cfg = SampleConfig(max_new_chars=len(task.expected), temperature=0)
    try:
        got = generate(model, tokenizer, task.prompt, cfg, start_char)
    except PromptError:  # no character of the prompt is known: it cannot be answered
        got = ""
    return Answer(task.prompt, task.expected, got)


def score_tasks(model, tokenizer, tasks: list[Task],
                start_char: Optional[str] = None, failures_kept: int = 5) -> TaskScore:
    """Every task answered greedily, in batches (the generation engine): each answer is the one
    `answer` gives it alone."""
    from playground.engine.model.generation import generate_many
    configs = [SampleConfig(max_new_chars=len(t.expected), temperature=0) for t in tasks]
    got = generate_many(model, tokenizer, [t.prompt for t in tasks], configs, start_char)
    answers = [Answer(t.prompt, t.expected, g) for t, g in zip(tasks, got)]
    wrong = tuple(a for a in answers if not a.correct)
    return TaskScore(len(answers), len(answers) - len(wrong), wrong[:failures_kept])
