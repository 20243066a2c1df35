"""`python -m playground inspect`: each reading in words and as JSON, and bad input in one line
with exit code 2 (in-process, on tiny saved models)."""

import json

import pytest
import torch

from playground.cli import main
from playground.engine.config import ModelConfig
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model import checkpoint
from playground.engine.model.gpt import GPT

TEXT = "to be or not to be that is the question"


@pytest.fixture(scope="module", params=["learned", "rope"])
def model_file(request, tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_text(TEXT)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=16,
                            position=request.param))
    path = tmp_path_factory.mktemp(request.param) / "m.safetensors"
    return checkpoint.save(path, checkpoint.Checkpoint(model, tokenizer)), request.param


def test_induction_writes_the_promised_json(model_file, tmp_path, capsys):
    path, _ = model_file
    out = tmp_path / "ind.json"
    assert main(["inspect", str(path), "--induction", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"heads", "loss_first_half", "loss_second_half"} <= data.keys()
    assert [(h["layer"], h["head"]) for h in data["heads"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(0 <= h["score"] <= 1 for h in data["heads"])
    shown = capsys.readouterr().out
    assert "layer 2: head 1" in shown and "loss on the second half" in shown


def test_lens_embeddings_and_surprise_in_words_and_json(model_file, tmp_path, capsys):
    path, position = model_file
    for flag, key in [("--lens", "top"), ("--embeddings", "tokens"), ("--surprise", "losses")]:
        out = tmp_path / "x.json"
        assert main(["inspect", str(path), "--prompt", "to be or", flag, "--json", str(out)]) == 0
        assert key in json.loads(out.read_text())
    shown = capsys.readouterr().out
    assert "block 2" in shown and "most surprising" in shown
    assert ("none (this model uses rotary" in shown) == (position == "rope")


@pytest.mark.parametrize("args, words", [
    (["--lens", "--prompt", "to bQ"], "never saw 'Q'"),
    (["--surprise"], "give it with --prompt"),
    (["--surprise", "--prompt", ""], "give it with --prompt"),
    (["--induction", "--probe-length", "1"], "2 or more"),
])
def test_bad_input_is_one_line_and_exit_code_2(model_file, capsys, args, words):
    path, _ = model_file
    assert main(["inspect", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_missing_file_or_no_reading_is_exit_code_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing.safetensors"), "--induction"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["inspect", str(tmp_path / "nothing.safetensors")])
    assert stop.value.code == 2 and "one of the arguments" in capsys.readouterr().err
