"""`python -m playground export`: what it prints, and bad input ending with one line and exit
code 2, with nothing left behind."""

import pytest

from playground.cli import main

pytest.importorskip("transformers")


def leftovers(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_export_prints_what_it_wrote_and_how_to_open_it(char_checkpoint, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(char_checkpoint), "--format", "hf", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert f"wrote {out}" in printed.out and "model.safetensors" in printed.out
    assert "architecture: GPT2LMHeadModel" in printed.out
    assert "(exact)" in printed.out and "greedy decoding matches" in printed.out
    assert f"AutoModelForCausalLM.from_pretrained({str(out)!r})" in printed.out
    assert "[100%] done" in printed.err and "warning" not in printed.err
    assert (out / "config.json").is_file() and not leftovers(tmp_path, "exported")


def test_a_missing_or_damaged_checkpoint_is_one_line_and_code_2(tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(tmp_path / "nope.safetensors"), "--format", "hf", "--out", str(out)]) == 2
    assert "nope.safetensors does not exist" in capsys.readouterr().err
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert main(["export", str(damaged), "--format", "onnx", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: damaged.safetensors")
    assert not out.exists() and not leftovers(tmp_path, "exported")


def test_a_non_empty_out_is_kept_unless_forced(char_checkpoint, tmp_path, capsys):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["export", str(char_checkpoint), "--format", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err
    assert (out / "mine.txt").read_text() == "keep me"
    assert main(["export", str(char_checkpoint), "--format", "hf", "--out", str(out), "--force",
                 "--quiet"]) == 0
    assert not (out / "mine.txt").exists() and (out / "model.safetensors").is_file()
    assert not leftovers(tmp_path, "exported")
    # even --force never replaces the folder that holds the model
    assert main(["export", str(char_checkpoint), "--format", "hf", "--out", str(tmp_path), "--force"]) == 2
    assert "a folder of its own" in capsys.readouterr().err and char_checkpoint.is_file()


def test_unknown_format_is_refused_by_the_parser(char_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(char_checkpoint), "--format", "gguf", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'gguf'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_failed_verification_leaves_nothing_behind(char_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("playground.export.verify.max_logprob_error", lambda model, theirs: 0.5)
    out = tmp_path / "exported"
    assert main(["export", str(char_checkpoint), "--format", "hf", "--out", str(out)]) == 2
    assert "verification failed" in capsys.readouterr().err
    assert not out.exists() and not leftovers(tmp_path, "exported")


def test_an_onnx_out_names_a_folder_not_a_file(char_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(out)]) == 2
    assert f"use {tmp_path / 'model'}" in capsys.readouterr().err and not out.exists()


def test_a_missing_package_names_the_extra(char_checkpoint, tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "needs onnxruntime" in err and "pip install 'gpt-playground[export]'" in err
