"""The command line end to end on a tiny config, in a subprocess as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--layers", "1", "--heads", "2", "--width", "16", "--block", "8", "--batch", "8",
        "--threads", "1"]


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "playground", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def cli_here(capsys, *args):
    """The command's own main in this process, as `python -m playground` runs it: (exit status,
    stdout, stderr). For the cases whose process is not the point (a torch import is 1.5 s)."""
    import torch

    from playground.cli import main
    threads = torch.get_num_threads()   # (generate sets one thread: not for the tests after)
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:   # argparse's refusals
        code = exc.code
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    ckpt, log = tmp / "m.safetensors", tmp / "run.jsonl"
    result = cli("train", "--builtin", "phrase", *TINY, "--steps", "40", "--eval-interval", "20",
                 "--out", ckpt, "--log-json", log)
    assert result.returncode == 0, result.stderr
    return ckpt, log, result


def test_train_writes_json_events_and_a_checkpoint(trained):
    ckpt, log, result = trained
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert kinds.count("step") == 40 and kinds.count("eval") == 2 and kinds.count("sample") == 2
    for e in events:
        if e["event"] in ("step", "eval", "done"):
            assert {"step", "loss", "val_loss", "elapsed_s"} <= e.keys()
        if e["event"] == "step":
            assert {"lr", "tokens_per_s"} <= e.keys() and e["tokens_per_s"] > 0
    done = events[-1]
    assert done["params"] > 0 and done["train_seconds"] > 0 and done["final_loss"] < 2.5
    assert {"final_val_loss"} <= done.keys()
    assert ckpt.exists() and "saved" in result.stderr


def test_generate_streams_to_stdout(trained, capsys):
    ckpt, _, _ = trained
    result = cli("generate", ckpt, "--prompt", "to be", "--chars", "25", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("to be") and len(result.stdout.rstrip("\n")) == 5 + 25
    code, again, _ = cli_here(capsys, "generate", ckpt, "--prompt", "to be", "--chars", "25", "--seed", "3")
    assert code == 0 and again == result.stdout


def test_generate_reports_unknown_prompt_characters(trained, capsys):
    ckpt, _, _ = trained
    result = cli("generate", ckpt, "--prompt", "to bz!", "--chars", "5")
    assert result.returncode == 0
    assert "never saw 'z', '!'" in result.stderr and result.stdout.startswith("to b")
    code, _, err = cli_here(capsys, "generate", ckpt, "--prompt", "XYZ", "--chars", "5")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_info(trained, capsys):
    ckpt, _, _ = trained
    code, out, _ = cli_here(capsys, "info", ckpt)
    assert code == 0
    assert "1 layers, 2 heads, width 16, block 8" in out
    assert '" abehinoqrstu"' in out and "trained:    40 steps on phrase" in out


def test_resume_continues_the_step_count(trained, tmp_path):
    ckpt, _, _ = trained
    log = tmp_path / "more.jsonl"
    result = cli("train", "--resume", ckpt, "--steps", "5", "--log-json", log, "--out", tmp_path / "more")
    assert result.returncode == 0, result.stderr
    steps = [json.loads(l)["step"] for l in log.read_text().splitlines() if '"event": "step"' in l]
    assert steps == [41, 42, 43, 44, 45]
    assert (tmp_path / "more.safetensors").exists()
    import contextlib
    import io

    from playground.cli import build_parser
    from playground.cli.info import run as info
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert info(build_parser().parse_args(["info", str(tmp_path / "more.safetensors")])) == 0
    # the seconds it states are those of all 45 steps, so the steps beside them are all 45
    assert "trained:    45 steps on phrase in " in out.getvalue()


def test_autograd_flag_trains_the_same_run(trained, tmp_path):
    """--autograd swaps the flat AdamW for torch's own: the same losses, step by step."""
    _, log, _ = trained
    again = tmp_path / "autograd.jsonl"
    result = cli("train", "--builtin", "phrase", *TINY, "--steps", "40", "--eval-interval", "20",
                 "--autograd", "--log-json", again)
    assert result.returncode == 0, result.stderr
    losses = [[json.loads(l)["loss"] for l in f.read_text().splitlines() if '"event": "step"' in l]
              for f in (log, again)]
    assert len(losses[0]) == len(losses[1]) == 40
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


@pytest.fixture(scope="module")
def bpe_trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bpe")
    ckpt, log = tmp / "bpe.safetensors", tmp / "run.jsonl"
    result = cli("train", "--builtin", "fable", *TINY, "--steps", "20", "--eval-interval", "10",
                 "--tokenizer", "bpe", "--vocab-size", "300", "--no-head-bias", "--out", ckpt,
                 "--log-json", log)
    assert result.returncode == 0, result.stderr
    return ckpt, log, result


def test_a_bpe_model_trains_logs_bits_per_character_and_generates_tokens(bpe_trained, capsys):
    ckpt, log, result = bpe_trained
    assert "tokens (BPE, 300 in the vocabulary" in result.stderr and "bits/char" in result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[0]["tokenizer"] == "bpe" and events[0]["chars_per_token"] > 1.5
    evals = [e for e in events if e["event"] == "eval"]
    assert all(e["val_bpc"] < e["val_loss"] / 0.6931 for e in evals)  # fewer bits per char than per token
    out = cli("generate", ckpt, "--prompt", "café 🎉", "--tokens", "10", "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("café 🎉")  # (20 steps in, it still writes stray bytes: U+FFFD)
    _, chars, _ = cli_here(capsys, "generate", ckpt, "--prompt", "The", "--chars", "40", "--seed", "1")
    assert len(chars.rstrip("\n")) == 3 + 40
    _, info, _ = cli_here(capsys, "info", ckpt)
    assert "byte-level BPE: 300 tokens (43 merges, end-of-text)" in info and "no head bias" in info


def test_continuing_a_bpe_model_keeps_its_tokenizer(bpe_trained, tmp_path, capsys):
    ckpt, _, _ = bpe_trained
    code, _, err = cli_here(capsys, "train", "--resume", ckpt, "--tokenizer", "char", "--steps", "2")
    assert code == 2 and "keeps its tokenizer" in err
    more = cli("train", "--resume", ckpt, "--builtin", "phrase", "--steps", "2", "--out", tmp_path / "m2")
    assert more.returncode == 0, more.stderr  # any text: a BPE model has no unknown characters


@pytest.mark.parametrize("args,words", [
    (["train", "--width", "100", "--heads", "3"], "width 100 must be divisible by heads 3"),
    (["train", "--tokenizer", "bpe", "--vocab-size", "100"], "BPE vocabulary size 100 is out of range"),
    (["generate", "pyproject.toml", "--tokens", "5", "--chars", "5"], "not allowed with argument"),
    (["train", "--text", "to be or not to be", "--block", "256"], "block size 256 is longer than the training text"),
    (["train", "--layers", "abc"], "invalid int value"),
    (["train", "--lr", "nan"], "learning rate must be a finite number"),
    (["train", "--corpus", "/no/such/file.txt"], "does not exist"),
    (["generate", "/no/such.safetensors"], "does not exist"),
    (["info", "pyproject.toml"], "not a valid model file|not a safetensors"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_non_zero_with_one_line(args, words, capsys, monkeypatch):
    """In this process (the command's own main, as `python -m playground` calls it: a
    subprocess per case cost 1.6 s of importing torch each); the one below runs the real
    process for its exit status and stderr."""
    import re
    monkeypatch.chdir(ROOT)
    code, _, stderr = cli_here(capsys, *args)
    assert code == 2
    assert re.search(words, stderr), stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_a_bad_argument_exits_2_from_the_real_process_with_one_line():
    result = cli("train", "--lr", "nan", cwd=ROOT)
    assert result.returncode == 2 and "learning rate must be a finite number" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_gpu_preset_without_a_gpu_says_how_to_train_it_here(monkeypatch):
    import torch

    from playground.cli import build_parser
    from playground.cli.train import run as run_train
    from playground.engine.errors import ConfigError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = build_parser().parse_args(["train", "--preset", "shakespeare-gpu", "--steps", "1"])
    with pytest.raises(ConfigError, match="meant for a cuda GPU: pass --device cpu"):
        run_train(args)
    asked = build_parser().parse_args(["train", "--preset", "shakespeare-gpu", "--device", "cuda"])
    with pytest.raises(ConfigError, match="sees no CUDA GPU$"):  # asked for: no hint to drop it
        run_train(asked)


def test_dpo_tunes_by_preference_and_names_a_bad_line(trained, tmp_path, capsys):
    ckpt, _, _ = trained
    pairs = tmp_path / "pairs.jsonl"
    good = [{"prompt": "to be ", "chosen": "or", "rejected": "th"},  # the block is 8 tokens
            {"prompt": "is ", "chosen": "the ", "rejected": "to b"}]
    pairs.write_text("".join(json.dumps(p) + "\n" for p in good * 6), encoding="utf-8")
    out, log = tmp_path / "tuned.safetensors", tmp_path / "dpo.jsonl"
    result = cli("dpo", ckpt, "--pairs", pairs, "--steps", "4", "--eval-interval", "2", "--batch", "4",
                 "--heldout", "0.25", "--threads", "1", "--out", out, "--log-json", log, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "DPO on 9 pairs (3 held out)" in result.stderr and f"saved {out}" in result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    evals = [e for e in events if e["event"] == "preference_eval"]
    assert [e["step"] for e in evals] == [0, 2, 4] and evals[-1]["heldout_accuracy"] is not None
    assert evals[0]["base_val_loss"] is not None  # the phrase the model was trained on, scored
    from playground.engine.model import checkpoint
    assert checkpoint.load(out).state["preference"]["pairs"] == 9

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good[0]) + "\n" + '{"prompt": "to be ", "chosen": "or"}\n', encoding="utf-8")
    code, _, err = cli_here(capsys, "dpo", ckpt, "--pairs", bad, "--out", tmp_path / "never.safetensors")
    assert code == 2 and "bad.jsonl, line 2: no 'rejected'" in err
    assert not (tmp_path / "never.safetensors").exists()
    code, _, err = cli_here(capsys, "dpo", ckpt)
    assert code == 2 and "--pairs FILE.jsonl, or --auto arithmetic" in err
