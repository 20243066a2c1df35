"""Tasks: a task file holds lines of prompt<TAB>expected (analysis/evaluation.py answers them:
a task is answered when the model's greedy completion starts with the expected text). The
arithmetic and counting corpora ship held-out tasks: problems whose answers never appear in
their training text."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from playground.engine.data.corpus import read_text_file
from playground.engine.errors import CorpusError

ESCAPES = {"\\n": "\n", "\\t": "\t", "\\\\": "\\"}


@dataclass(frozen=True)
class Task:
    prompt: str
    expected: str


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
