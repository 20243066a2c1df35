"""The built wheel works without the source checkout: it carries the corpora and every module
(and nothing stale), installs both commands (gpt-playground, the command line; gpt-playground-window,
the window), trains the seed preset and a built-in corpus, and builds the window, installed into a
folder of its own and run from outside the checkout, with the checkout's editable install switched off."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# drop the editable install's import hook, so only the installed wheel can answer imports
PRELUDE = ("import sys; sys.meta_path = [f for f in sys.meta_path "
           "if '__editable__' not in getattr(f, '__module__', '')]; ")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # from a copy of the sources: setuptools builds in place and would pack whatever a stale
    # build/ folder of the checkout still holds
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("playground", "corpora", "resources"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp / "dist"), str(source)],
                           capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("gpt_playground_studio-*.whl"))
    site = tmp / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    workdir = tmp / "elsewhere"
    workdir.mkdir()
    return wheel, site, workdir


def run_installed(installed, code: str, timeout: int = 240) -> subprocess.CompletedProcess:
    _, site, workdir = installed
    return subprocess.run([sys.executable, "-c", PRELUDE + code], cwd=workdir, env=environment(installed),
                          capture_output=True, text=True, timeout=timeout)


def environment(installed, platform: str = "offscreen") -> dict:
    _, site, workdir = installed
    return {**os.environ, "PYTHONPATH": str(site), "QT_QPA_PLATFORM": platform,
            "PLAYGROUND_SETTINGS_FILE": str(workdir / "settings.ini")}


def test_the_wheel_carries_every_module_nothing_stale_and_the_license(installed):
    names = set(zipfile.ZipFile(installed[0]).namelist())
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "playground").rglob("*.py") if "__pycache__" not in p.parts}
    source |= {f"playground/corpora/{p.name}" for p in (ROOT / "corpora").glob("*.py")}   # package-dir
    shipped = {n for n in names if n.startswith("playground/") and n.endswith(".py")}
    assert shipped == source   # a new sub-package missing from pyproject's list fails here
    assert "gpt_playground_studio-0.1.0.dist-info/licenses/resources/LICENSE" in names


def test_the_wheel_installs_both_commands_and_the_cli_one_opens_no_window(installed):
    _, site, workdir = installed
    cli, window = site / "bin" / "gpt-playground", site / "bin" / "gpt-playground-window"
    assert "from playground.ui.app import main" in window.read_text()
    # a platform plugin that does not exist: anything that started Qt would fail
    result = subprocess.run([str(cli), "--help"], cwd=workdir, env=environment(installed, "no-such-platform"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: gpt-playground [-h]")
    for command in ("train", "generate", "export", "serve", "gpt-playground-window"):
        assert command in result.stdout
    assert "character-level" not in result.stdout
    export = subprocess.run([str(cli), "export", "--help"], cwd=workdir, env=environment(installed),
                            capture_output=True, text=True, timeout=120)
    assert "usage: gpt-playground export" in export.stdout and "gguf" in export.stdout


def test_the_wheel_carries_every_built_in_corpus(installed):
    from playground.engine.data.corpus import BUILTINS
    names = zipfile.ZipFile(installed[0]).namelist()
    # only the generated corpus has no file (its text is written by code when it is loaded)
    assert [name for name, (file, _) in BUILTINS.items() if not file] == ["repeat"]
    for file in [file for file, _ in BUILTINS.values() if file]:
        assert f"playground/corpora/{file}" in names
    assert {"playground/corpora/arithmetic_tasks.tsv", "playground/corpora/counting_tasks.tsv"} <= set(names)
    assert not any(n.startswith(("tests/", "corpora/")) for n in names)


def test_the_installed_package_trains_the_seed_and_a_built_in_corpus(installed):
    _, site, workdir = installed
    result = run_installed(installed, (
        "import playground; from importlib import resources; "
        f"assert playground.__file__.startswith({str(site)!r}), playground.__file__; "
        f"assert str(resources.files('playground.corpora')).startswith({str(site)!r}); "
        "from playground.cli import main; "
        "assert main(['train', '--preset', 'seed', '--quiet', '--out', 'seed.safetensors']) == 0; "
        "assert main(['train', '--builtin', 'fable', '--layers', '1', '--width', '16', '--heads', '2', "
        "'--block', '8', '--batch', '8', '--steps', '20', '--quiet']) == 0"))
    assert result.returncode == 0, result.stderr
    assert "final loss 0.0" in result.stderr  # the seed preset ends below 0.1
    assert (workdir / "seed.safetensors").exists()


def test_the_installed_package_builds_the_window(installed):
    _, site, _ = installed
    result = run_installed(installed, (
        "from PySide6.QtWidgets import QApplication; app = QApplication([]); "
        "import playground.ui.main_window as m; "
        f"assert m.__file__.startswith({str(site)!r}); "
        "w = m.MainWindow(); w.corpus.select('fable'); "
        "assert len(w.corpus.text()) > 1000 and w.training.train.isEnabled(), w.train_problem(); "
        "print(w.corpus.picker.count()); w.close()"))
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) >= 6  # the built-ins and "custom"
