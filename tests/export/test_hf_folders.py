"""Opening transformers folders: tiny random GPT-2 and Starcoder2 models built and saved here with
transformers (no hub is reachable) open as our model, give transformers' log-probabilities, and
then work everywhere a model file does: generate, evaluate, info, export, save, serve. What ours
cannot express is refused in words."""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from playground.engine.data.bpe import BPETokenizer
from playground.engine.errors import CheckpointError
from playground.engine.model import checkpoint, hf_folder

from .conftest import BPE_TEXT

transformers = pytest.importorskip("transformers")  # the export extra: always there in the test extra


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train(BPE_TEXT * 3, 300)


def gpt2_folder(path, tokenizer, **overrides):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                        activation_function="gelu_new", resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                        **overrides)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # away from the initialisation: a wrong mapping cannot hide
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.tok.save(str(path / "tokenizer.json"))
    return path, model


def starcoder2_folder(path, tokenizer, **overrides):
    from transformers import Starcoder2Config, Starcoder2ForCausalLM
    torch.manual_seed(1)
    settings = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, hidden_act="gelu_pytorch_tanh",
                    max_position_embeddings=64, sliding_window=12, rope_theta=50000.0, use_bias=True,
                    norm_epsilon=1e-5, tie_word_embeddings=True, attention_dropout=0.0, residual_dropout=0.0,
                    embedding_dropout=0.0) | overrides
    model = Starcoder2ForCausalLM(Starcoder2Config(**settings)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.tok.save(str(path / "tokenizer.json"))
    return path, model


@pytest.mark.parametrize("build", [gpt2_folder, starcoder2_folder], ids=["gpt2", "starcoder2"])
def test_a_folder_opens_as_our_model_with_transformers_log_probabilities(tmp_path, tokenizer, build):
    folder, theirs = build(tmp_path / "hf", tokenizer)
    ckpt = checkpoint.load(folder)  # any model path: a folder too
    cfg = ckpt.model_config
    assert cfg.activation == "gelu_tanh" and cfg.tie_embeddings and not cfg.head_bias
    assert ckpt.state["verified"] < hf_folder.TOLERANCE  # held to transformers on load
    ids = torch.tensor([tokenizer.encode("to be or not to be, naïve résumé")[:40]])
    with torch.no_grad():  # longer than the rotary window: the sliding window must agree too
        mine = ckpt.model(ids)[0].log_softmax(-1)
        other = theirs(ids).logits.log_softmax(-1)
    assert float((mine - other).abs().max()) < 1e-4
    assert ckpt.model.lm_head.weight is ckpt.model.wte.weight


def test_an_opened_folder_generates_evaluates_saves_and_exports(tmp_path, tokenizer, capsys):
    from playground.cli import main
    folder, theirs = gpt2_folder(tmp_path / "gpt2", tokenizer)
    assert main(["generate", str(folder), "--prompt", "to be", "--tokens", "12", "--temperature", "0"]) == 0
    ours = capsys.readouterr().out
    ids = torch.tensor([tokenizer.encode("to be")])
    expected = theirs.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)[0, ids.size(1):]
    assert ours.rstrip("\n") == "to be" + tokenizer.decode(expected.tolist())
    text = tmp_path / "text.txt"
    text.write_text(BPE_TEXT)
    assert main(["evaluate", str(folder), "--text", str(text)]) == 0
    assert "bits per character" in capsys.readouterr().out
    assert main(["info", str(folder)]) == 0
    info = capsys.readouterr().out
    assert "tied embeddings" in info and "tanh GELU" in info and "transformers folder (gpt2)" in info
    saved = checkpoint.save(tmp_path / "mine", checkpoint.load(folder))  # tied weights: stored each once
    again = checkpoint.load(saved)
    assert torch.equal(again.model.lm_head.weight, again.model.wte.weight)
    out = tmp_path / "exported"
    assert main(["export", str(saved), "--format", "hf", "--out", str(out), "--quiet"]) == 0
    exported = json.loads((out / "config.json").read_text())
    assert exported["activation_function"] == "gelu_new" and exported["tie_word_embeddings"] is True


def test_an_opened_folder_is_served_writing_what_transformers_writes(tmp_path, tokenizer):
    """`serve` takes a folder as the other commands do (it refused one as "a folder, not a model
    file" until 2026-12-05): a real server in its own process, asked through the openai client,
    writes transformers' greedy text."""
    openai = pytest.importorskip("openai")
    folder, theirs = gpt2_folder(tmp_path / "gpt2", tokenizer)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "playground", "serve", str(folder), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", proc.stderr.readline()).group(1))
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=30)
        deadline = time.monotonic() + 60  # the folder loads (and is held to transformers) in the background
        while True:
            try:
                reply = client.completions.create(model="gpt2", prompt="to be", max_tokens=12, temperature=0)
                break
            except openai.APIStatusError as exc:  # 503 while the model loads
                assert exc.status_code == 503 and time.monotonic() < deadline and proc.poll() is None, exc
                time.sleep(0.2)
        ids = torch.tensor([tokenizer.encode("to be")])
        expected = theirs.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)[0, ids.size(1):]
        assert reply.choices[0].text == tokenizer.decode(expected.tolist())
        assert reply.usage.completion_tokens == 12
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("damage,words", [
    ("llama", "GPT2LMHeadModel and Starcoder2ForCausalLM"),
    ("no weights", "has no model.safetensors"),
    ("pickled weights", "pickle"),
    ("no tokenizer", "has no tokenizer"),
    ("damaged weights", "model.safetensors is damaged"),
])
def test_a_folder_the_server_cannot_open_is_refused_before_it_listens(tmp_path, tokenizer, capsys, damage, words):
    from playground.cli import main
    folder, _ = gpt2_folder(tmp_path / "gpt2", tokenizer)
    if damage == "llama":
        (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    elif damage == "no weights":
        (folder / "model.safetensors").unlink()
    elif damage == "pickled weights":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif damage == "no tokenizer":
        (folder / "tokenizer.json").unlink()
    else:
        (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    assert main(["serve", str(folder), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert words in err and "serving" not in err


def test_a_served_folder_is_named_after_the_whole_folder_name(tmp_path, monkeypatch):
    from playground.cli import build_parser
    from playground.cli.serve import served_for
    folder = tmp_path / "gpt2-v1.5"
    folder.mkdir()
    assert served_for(build_parser().parse_args(["serve", str(folder)])).settings.model_name == "gpt2-v1.5"
    monkeypatch.chdir(folder)
    assert served_for(build_parser().parse_args(["serve", "."])).settings.model_name == "gpt2-v1.5"
    assert served_for(build_parser().parse_args(["serve", "m.v2.safetensors"])).settings.model_name == "m.v2"


@pytest.mark.parametrize("change,words", [
    ({"num_key_value_heads": 2}, "grouped-query attention"),
    ({"hidden_act": "silu"}, "activation 'silu'"),
])
def test_what_our_gpt_cannot_express_is_refused_in_words(tmp_path, tokenizer, change, words):
    folder, _ = starcoder2_folder(tmp_path / "sc", tokenizer, **change)
    with pytest.raises(CheckpointError, match=words):
        checkpoint.load(folder)


def test_an_unsupported_architecture_names_the_supported_ones(tmp_path):
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="GPT2LMHeadModel and Starcoder2ForCausalLM"):
        checkpoint.load(folder)


def test_pickled_weights_are_never_loaded(tmp_path, tokenizer):
    folder, _ = gpt2_folder(tmp_path / "gpt2", tokenizer)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle"):
        checkpoint.load(folder)


def test_a_model_too_big_for_memory_is_refused_before_it_loads(tmp_path, monkeypatch):
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_layer": 48,
                                                    "n_embd": 4096, "n_head": 32, "vocab_size": 50257}))
    monkeypatch.setattr(hf_folder, "_available_bytes", lambda: 8 * 2**30)
    with pytest.raises(CheckpointError, match=r"needs about .* of memory .* this machine has 8.0 GB free"):
        checkpoint.load(folder)


def test_a_padded_vocabulary_round_trips(tokenizer):
    padded = BPETokenizer.padded(tokenizer, tokenizer.vocab_size + 5)
    again = BPETokenizer.from_dict(padded.to_dict())
    assert again.vocab_size == tokenizer.vocab_size + 5 and again.token_bytes(again.vocab_size - 1) == b""
    assert math.isfinite(again.vocab_size)
