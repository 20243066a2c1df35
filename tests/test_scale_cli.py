"""`python -m playground scale`: a three-size ladder end to end in a subprocess, and bad input
refused with a message and exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from playground.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--builtin", "fable", "--preset", "tiny", "--sizes", "3", "--smallest", "2000",
        "--largest", "20000", "--threads", "1"]


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "playground", "scale", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_a_three_size_ladder_end_to_end_with_json(tmp_path):
    out, models = tmp_path / "scale.json", tmp_path / "models"
    result = cli(*TINY, "--tokens", "12000", "--json", out, "--out-dir", models)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    runs = [line for line in lines if line.startswith("run ")]
    assert [r.split(":")[0] for r in runs] == ["run 1/3", "run 2/3", "run 3/3"]
    assert all("params" in r and "FLOPs" in r and "val " in r for r in runs)
    assert "left" in runs[0] and "left" not in runs[-1]
    assert any(line.startswith("L(N) = E + A·N^-α: E=") for line in lines)
    assert any("three runs" in line for line in lines if line.startswith("warning"))  # not evidence
    data = json.loads(out.read_text())
    assert set(data) == {"runs", "fit"} and len(data["runs"]) == 3
    for run in data["runs"]:
        assert {"params", "tokens", "flops", "train_seconds", "val_loss", "best_step"} <= run.keys()
        assert run["tokens"] == 23 * 16 * 32 and run["flops"] == 6 * run["params"] * run["tokens"]
        assert Path(run["path"]).parent == models and Path(run["path"]).exists()
    assert [r["params"] for r in data["runs"]] == sorted(r["params"] for r in data["runs"])
    assert {"E", "A", "alpha", "r2", "ok", "warning"} <= data["fit"].keys()


def test_equal_compute_frontier_prints_the_best_size_per_budget():
    result = cli(*TINY, "--frontier", "3e8,8e8", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 of 6 runs" in result.stderr
    assert result.stderr.count("best size") == 2 and "run 5/5" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--sizes", "2"], "sizes 2 is out of range"),
    (["--sizes", "13"], "sizes 13 is out of range"),
    (["--tokens", "1e6", "--flops", "1e12"], "not allowed with"),
    (["--tokens", "-5"], "-5 is not a positive number"),
    (["--flops", "0"], "0 is not a positive number"),
    (["--flops", "inf"], "inf is not a positive number"),
    (["--frontier", "1e12,many"], "'many' is not a number"),
    (["--smallest", "50000", "--largest", "60000"], "at least twice the smallest"),
    (["--largest", "1000000000000"], "largest size"),
])
def test_bad_input_exits_2_with_a_message(args, message, capsys):
    try:
        code = main(["scale", "--builtin", "fable", *args])
    except SystemExit as exc:  # argparse refuses before the command runs
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
