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
    assert main(["export", str(damaged), "--format", "onnx", "--out", f"{out}.onnx", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: damaged.safetensors")
    assert not out.exists() and not leftovers(tmp_path, "exported")
    assert not any(p.name.startswith("exported") for p in tmp_path.iterdir())


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
        main(["export", str(char_checkpoint), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_failed_verification_leaves_nothing_behind(char_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("playground.export.verify.max_logprob_error", lambda model, theirs, **_: 0.5)
    out = tmp_path / "exported"
    assert main(["export", str(char_checkpoint), "--format", "hf", "--out", str(out)]) == 2
    assert "verification failed" in capsys.readouterr().err
    assert not out.exists() and not leftovers(tmp_path, "exported")


def test_an_onnx_out_is_a_file_and_its_tokenizer_goes_beside_it(char_checkpoint, tmp_path, capsys):
    folder = tmp_path / "exported"
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(folder)]) == 2
    assert f"{folder}.onnx" in capsys.readouterr().err and not folder.exists()
    out = tmp_path / "model.onnx"
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx, model.tokenizer.json" in printed and "onnxruntime.InferenceSession" in printed
    assert (tmp_path / "model.tokenizer.json").is_file()
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(out), "--quiet", "--force"]) == 0
    assert not leftovers(tmp_path, "model.onnx")


def test_without_transformers_the_folder_is_written_and_says_it_is_not_verified(
        char_checkpoint, tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    out = tmp_path / "hf"
    assert main(["export", str(char_checkpoint), "--format", "hf", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "NOT verified" in captured.out and "transformers is not installed" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                      "tokenizer.json", "tokenizer_config.json"]


def test_a_missing_package_names_the_extra(char_checkpoint, tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "needs onnxscript" in err and "pip install 'gpt-playground-studio[export]'" in err
    assert not (tmp_path / "x.onnx").exists()
