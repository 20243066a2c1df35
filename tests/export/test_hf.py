"""Export to transformers: GPT-2 for learned positions, Starcoder2 for rotary ones, each opened
by the Auto classes alone and held to our model's log-probabilities and greedy text."""

import json

import pytest
import torch

from playground.engine.config import SampleConfig
from playground.engine.data.bpe import BPETokenizer
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model import checkpoint
from playground.engine.model.generation import generate
from playground.export import ExportError, export_model
from playground.export.hf import check_mappable
from tests.export.conftest import BPE_TEXT, TEXT, WIDE, random_model, save

transformers = pytest.importorskip("transformers")


def reload(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, transformers.AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def logprob_gap(ours, theirs, ids) -> float:
    return float((ours(ids)[0].log_softmax(-1) - theirs(ids).logits.log_softmax(-1)).abs().max())


@torch.no_grad()
def greedy_pair(ours, tokenizer, theirs, hf_tokenizer, prompt: str, n: int) -> tuple[str, str]:
    """(our greedy continuation, transformers' decoded by the exported tokenizer)."""
    text = generate(ours, tokenizer, prompt, SampleConfig(max_new_tokens=n, temperature=0))
    ids = torch.tensor([hf_tokenizer.encode(prompt, add_special_tokens=False)])
    out = theirs.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    return text, hf_tokenizer.decode(out[0, ids.size(1):])


def test_char_model_with_head_bias_becomes_an_exact_gpt2(char_checkpoint, tmp_path):
    report = export_model(char_checkpoint, "hf", tmp_path / "hf")
    assert report.architecture == "GPT2LMHeadModel" and report.exact and report.greedy_match
    assert report.max_logprob_error < 1e-4 and not report.warnings
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= set(report.files)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["model_type"], config["activation_function"], config["tie_word_embeddings"],
            config["n_positions"]) == ("gpt2", "gelu", False, 16)
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert (generation["do_sample"], generation["top_k"], "max_length" in generation) == (True, 0, False)

    ckpt = checkpoint.load(char_checkpoint)
    theirs, hf_tokenizer = reload(tmp_path / "hf")
    ids = torch.randint(0, 15, (3, 16), generator=torch.Generator().manual_seed(1))
    assert logprob_gap(ckpt.model, theirs, ids) < 1e-4
    ours_text, their_text = greedy_pair(ckpt.model, ckpt.tokenizer, theirs, hf_tokenizer, "to ", 13)
    assert ours_text == their_text and len(ours_text) == 13


def test_a_head_bias_over_more_tokens_than_the_width_exports_approximately(tmp_path):
    tokenizer = CharTokenizer.from_text(WIDE)  # 41 characters > width 16 + 1
    with_bias = save(tmp_path, "bias", random_model(tokenizer), tokenizer)
    report = export_model(with_bias, "hf", tmp_path / "bias-hf")
    assert not report.exact and report.max_logprob_error >= 1e-4
    assert f"{report.max_logprob_error:.3g}" in report.warnings[0]
    assert "--no-head-bias" in report.warnings[0]
    assert (tmp_path / "bias-hf" / "model.safetensors").is_file()

    no_bias = save(tmp_path, "nobias", random_model(tokenizer, head_bias=False), tokenizer)
    report = export_model(no_bias, "hf", tmp_path / "nobias-hf")
    assert report.exact and report.max_logprob_error < 1e-4 and report.greedy_match
    assert not report.warnings


def test_rotary_model_becomes_an_exact_starcoder2_within_and_beyond_its_window(tmp_path):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, position="rope", block_size=8)
    report = export_model(save(tmp_path, "rope", model, tokenizer), "hf", tmp_path / "hf")
    assert report.architecture == "Starcoder2ForCausalLM" and report.exact and report.greedy_match
    theirs, hf_tokenizer = reload(tmp_path / "hf")
    assert (theirs.config.sliding_window, theirs.config.model_type) == (8, "starcoder2")
    generator = torch.Generator().manual_seed(2)
    assert logprob_gap(model, theirs, torch.randint(0, 15, (2, 8), generator=generator)) < 1e-4
    # past the block, both slide the same window along absolute rotary positions
    assert logprob_gap(model, theirs, torch.randint(0, 15, (2, 19), generator=generator)) < 1e-4
    ours_text, their_text = greedy_pair(model, tokenizer, theirs, hf_tokenizer, "the ", 30)
    assert ours_text == their_text and len(ours_text) == 30


def test_bpe_model_exports_exactly_with_its_tokenizer(tmp_path):
    tokenizer = BPETokenizer.train(BPE_TEXT, 300)
    model = random_model(tokenizer, head_bias=False)
    report = export_model(save(tmp_path, "bpe", model, tokenizer), "hf", tmp_path / "hf")
    assert report.exact and report.greedy_match
    theirs, hf_tokenizer = reload(tmp_path / "hf")
    text = "Une crème brûlée, s'il vous plaît 😀\n  ☃ and naïve"
    ids = hf_tokenizer.encode(text, add_special_tokens=False)
    assert ids == tokenizer.encode(text) and hf_tokenizer.decode(ids) == text
    assert logprob_gap(model, theirs, torch.tensor([ids[:16], ids[-16:]])) < 1e-4


def test_a_setting_the_mapping_does_not_know_is_refused(monkeypatch):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, dropout=0.1)
    monkeypatch.setattr("playground.export.hf.KNOWN", frozenset({"vocab_size", "n_layer", "n_head",
                                                                 "n_embd", "block_size", "position",
                                                                 "head_bias"}))
    with pytest.raises(ExportError, match="dropout = 0.1 is new to the exporter"):
        check_mappable(model)


def test_a_shakespeare_size_model_exports_exactly_to_both_formats(tmp_path):
    """shakespeare-fast's shape: 3 layers x 128, 4 heads, block 64, 65 characters (<= 129: the
    head bias folds exactly), with the conftest's push away from the initialisation."""
    import string
    tokenizer = CharTokenizer.from_text(string.ascii_letters + string.digits + " \n.")
    assert tokenizer.vocab_size == 65
    model = random_model(tokenizer, seed=3, n_layer=3, n_head=4, n_embd=128, block_size=64)
    path = save(tmp_path, "big", model, tokenizer)
    for fmt, out in (("hf", tmp_path / "big-hf"), ("onnx", tmp_path / "big.onnx")):
        report = export_model(path, fmt, out)
        assert report.exact and report.max_logprob_error < 1e-4 and report.greedy_match, (fmt, report)
    theirs, hf_tokenizer = reload(tmp_path / "big-hf")
    ids = torch.randint(0, 65, (2, 64), generator=torch.Generator().manual_seed(1))
    assert logprob_gap(model, theirs, ids) < 1e-4
    ours, text = greedy_pair(model, tokenizer, theirs, hf_tokenizer, "to be", 30)
    assert ours == text and len(ours) == 30
