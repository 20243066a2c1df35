"""The README stays true: its "Five commands" run as written and print what it shows, and every
relative link in README.md and resources/docs/*.md reaches a file and, with a #fragment, a heading."""

import re
import shlex
import subprocess
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "resources" / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
FIGURE = r"\d+\.\d+(?:e[-+]?\d+)?"  # a decimal as the README shows one: 11.3, 5.2e-06
ANY_NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def five_commands() -> list[tuple[str, str]]:
    """(command, the output shown under it) for each bash block of the Five commands section."""
    blocks = FENCE.findall(section(README.read_text(encoding="utf-8"), "Five commands"))
    pairs = []
    for (kind, body), (next_kind, next_body) in zip(blocks, blocks[1:] + [("", "")]):
        if kind == "bash":
            assert next_kind == "text", f"no text block shows what {body.strip()!r} prints"
            pairs.append((body.strip(), next_body))
    return pairs


def line_pattern(line: str) -> re.Pattern:
    """A shown output line as a regex: "…" stands for any text, and a decimal figure (a loss, a
    time) for any decimal, since those differ between machines; integers must match."""
    parts = []
    for piece in re.split(f"(…|{FIGURE})", line.strip()):
        if piece == "…":
            parts.append(".*")
        elif re.fullmatch(FIGURE, piece):
            parts.append(ANY_NUMBER)
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def check_output(command: str, shown: str, printed: str) -> None:
    """Every shown line appears in the printed output, in order; "..." lines skip any lines."""
    lines = printed.splitlines()
    position = 0
    for line in shown.splitlines():
        if not line.strip() or line.strip() in ("...", "…"):
            continue
        pattern = line_pattern(line)
        found = next((i for i in range(position, len(lines)) if pattern.search(lines[i])), None)
        assert found is not None, f"{command!r} did not print {line.strip()!r}; it printed:\n{printed}"
        position = found + 1


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    assert command.startswith(".venv/bin/python -m playground "), command
    args = [sys.executable, *shlex.split(command)[1:]]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=240)


def test_the_five_commands_run_as_written_and_print_what_the_readme_shows(tmp_path):
    pairs = five_commands()
    assert len(pairs) == 5, [c for c, _ in pairs]
    # the first command trains the model file the other four only read, so those four run side
    # by side (on a busy machine most of each one's time is loading PyTorch)
    first, *rest = pairs
    done = run(first[0], tmp_path)
    assert done.returncode == 0, done.stderr
    check_output(first[0], first[1], done.stdout + done.stderr)
    with ThreadPoolExecutor(len(rest)) as pool:
        results = list(pool.map(lambda pair: run(pair[0], tmp_path), rest))
    for (command, shown), result in zip(rest, results):
        assert result.returncode == 0, f"{command!r} exited {result.returncode}:\n{result.stderr}"
        check_output(command, shown, result.stdout + result.stderr)


def test_the_output_check_reads_figures_loosely_and_words_exactly():
    check_output("x", "loss 0.0526 in 11.3 s\n...\nsaved a", "loss 0.0493 in 2.9 s\nmore\nsaved a\n")
    check_output("x", "max 5.2e-06 (exact); matches: …", "max 6.7e-06 (exact); matches: 'to be'\n")
    with pytest.raises(AssertionError):
        check_output("x", "parameters: 103,821", "parameters: 103,822\n")
    with pytest.raises(AssertionError):
        check_output("x", "b\na", "a\nb\n")  # in order


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_a_heading(path):
    checked = 0
    for target in links(path):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        assert destination.exists(), f"{path.name} links to {target}, which does not exist"
        if fragment:
            assert fragment in anchors(destination), f"{path.name} links to {target}: no such heading"
        checked += 1
    assert path != README or checked >= 10  # the README's list of documents is there


def test_the_slugs_are_githubs():
    assert slug("GGUF, for llama.cpp and Ollama") == "gguf-for-llamacpp-and-ollama"
    assert slug("Tuning by preference (DPO)") == "tuning-by-preference-dpo"
    assert slug("How our α compares") == "how-our-α-compares"
