"""The package's shape: no import cycle between its modules (counting imports inside functions
too), nothing imports upwards (the engine's data below its model, below analysis, below training;
the engine below the server and the exporter, below the window, the bench and the command line;
the window's controllers below its views), no two modules share a file name, every module starts
with a docstring, and opening a model file imports nothing of the network."""

import ast
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "playground"

# (prefix, level): a module may import modules of its own level or below, never above. The
# longest matching prefix decides; peers of one level (serve, export) must not import each other.
LEVELS = [
    ("playground.engine", 0),           # config, errors, events, presets, wording: everyone's
    ("playground.engine.data", 1),
    ("playground.engine.model", 2),
    ("playground.engine.analysis", 3),
    ("playground.engine.training", 4),
    ("playground.serve", 5),
    ("playground.export", 5),
    ("playground.ui", 8),               # the package itself (its lazy MainWindow)
    ("playground.ui.controllers", 6),
    ("playground.ui.views", 7),
    ("playground.ui.app", 8),
    ("playground.ui.main_window", 8),
    ("playground.ui.platform_check", 8),
    ("playground.bench", 9),
    ("playground.cli", 10),
    ("playground", 11),                 # __main__
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules this file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out |= {n for n in names if n in known}
    return out


def level(module: str) -> tuple[str, int]:
    prefix = max((p for p, _ in LEVELS if module == p or module.startswith(p + ".")), key=len)
    return prefix, dict(LEVELS)[prefix]


def test_no_import_cycles():
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    # a package's __init__ is imported with each submodule: only cycles between modules count
    state: dict[str, int] = {}

    def visit(name, trail):
        state[name] = 1
        for nxt in graph[name]:
            if nxt in found and found[nxt].name == "__init__.py":
                continue
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join(trail + [name, nxt]))
            if nxt not in state:
                visit(nxt, trail + [name])
        state[name] = 2
    for name in graph:
        if name not in state:
            visit(name, [])


def test_nothing_imports_upwards():
    found = modules()
    upward = []
    for name, path in found.items():
        mine, my_level = level(name)
        for other in imports(path, set(found)) - {name}:
            theirs, their_level = level(other)
            if their_level > my_level or (their_level == my_level and mine != theirs
                                          and mine.count(".") == theirs.count(".") and my_level == 5):
                upward.append(f"{name} ({mine}) imports {other} ({theirs})")
    assert not upward, "\n".join(upward)


def test_every_module_file_name_is_its_own():
    names = Counter(p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    assert not [n for n, count in names.items() if count > 1]


def test_every_module_says_what_it_is():
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{name} has no docstring"


def test_opening_a_model_file_imports_nothing_of_the_network(tmp_path):
    """Reading a model's tokenizer used to import the corpus downloader (checkpoint -> corpus
    -> download)."""
    script = (
        "import sys\n"
        "from playground.engine.config import ModelConfig\n"
        "from playground.engine.data.tokenizer import CharTokenizer\n"
        "from playground.engine.model import checkpoint\n"
        "from playground.engine.model.gpt import GPT\n"
        f"path = checkpoint.save({str(tmp_path / 'm')!r}, checkpoint.Checkpoint("
        "GPT(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=4, block_size=4)), CharTokenizer('abc')))\n"
        "checkpoint.load(path)\n"
        # (torch itself imports urllib and sockets: what is ours is the downloader)
        "print([m for m in sys.modules if m.startswith('playground') and 'download' in m])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_window_opens_before_torch_loads():
    """ui/app.py puts the window on screen, then loads torch on a thread (about a second): so
    nothing the main window imports may import torch. One module did (the preference tab's pairs
    came from the DPO trainer's module), and the first paint took 1.40 s instead of 0.61."""
    script = "import sys\nimport playground.ui.main_window\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])\n"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
