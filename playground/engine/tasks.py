"""Task accuracy: a task file holds lines of prompt<TAB>expected; a task is answered when the
model's greedy completion starts with the expected text. The arithmetic and counting corpora
ship held-out tasks: problems whose answers never appear in their training text."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from playground.engine.config import SampleConfig
from playground.engine.corpus import read_text_file
from playground.engine.errors import CorpusError, PromptError

ESCAPES = {"\\n": "\n", "\\t": "\t", "\\\\": "\\"}


@dataclass(frozen=True)
class Task:
    prompt: str
    expected: str


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


def unescape(field: str) -> str:
    """Task files write a newline as \\n, a tab as \\t and a backslash as \\\\."""
    out, i = [], 0
    while i < len(field):
        pair = field[i:i + 2]
        if pair in ESCAPES:
            out.append(ESCAPES[pair])
            i += 2
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_tasks(text: str, name: str = "the task file") -> list[Task]:
    """Lines of prompt<TAB>expected (blank lines skipped); CorpusError in words for bad ones."""
    tasks = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise CorpusError(f"{name}, line {number}: no tab; each line is a prompt, a tab, and "
                              "the expected answer (write a newline inside them as \\n)")
        prompt, expected = line.split("\t", 1)
        if not expected:
            raise CorpusError(f"{name}, line {number}: the expected answer after the tab is empty")
        tasks.append(Task(unescape(prompt), unescape(expected)))
    if not tasks:
        raise CorpusError(f"{name} holds no tasks: write one prompt<TAB>expected per line")
    return tasks


def read_tasks(path: str | Path) -> list[Task]:
    return parse_tasks(read_text_file(path), Path(path).name)


def builtin_tasks(corpus_name: str) -> tuple[Task, ...]:
    """The held-out tasks a built-in corpus ships (corpora/NAME_tasks.tsv), or none."""
    entry = resources.files("playground.corpora") / f"{corpus_name}_tasks.tsv"
    if not entry.is_file():
        return ()
    return tuple(parse_tasks(entry.read_text(encoding="utf-8"), entry.name))


def answer(model, tokenizer, task: Task, start_char: Optional[str] = None) -> Answer:
    """The model's greedy completion, as long as the expected answer."""
    from playground.engine.generation import generate
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
    from playground.engine.generation import generate_many
    configs = [SampleConfig(max_new_chars=len(t.expected), temperature=0) for t in tasks]
    got = generate_many(model, tokenizer, [t.prompt for t in tasks], configs, start_char)
    answers = [Answer(t.prompt, t.expected, g) for t, g in zip(tasks, got)]
    wrong = tuple(a for a in answers if not a.correct)
    return TaskScore(len(answers), len(answers) - len(wrong), wrong[:failures_kept])
