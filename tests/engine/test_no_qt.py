"""The engine never imports Qt: a fresh interpreter imports all of it and checks sys.modules."""

import pkgutil
import subprocess
import sys

import playground.engine


def test_engine_imports_no_qt():
    modules = [f"playground.engine.{m.name}" for m in pkgutil.iter_modules(playground.engine.__path__)]
    assert len(modules) >= 9
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "import playground.cli, playground.cli.train, playground.cli.scale, playground.cli.serve, playground.cli.export, playground.bench.runner\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
