"""The package's shape: no import cycle between its modules (counting imports inside
functions too), and every module starts with a docstring."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "playground"


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


def test_every_module_says_what_it_is():
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{name} has no docstring"
