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
    with pytest.raises(ExportError) as caught:
        check_mappable(model)
    assert str(caught.value) == ("the model's setting dropout = 0.1 is new to the exporter, which cannot map it "
                                 "onto a transformers architecture yet")


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


def test_the_gpt2_mapping_by_name_and_config_by_hand():
    """Every name of ours to transformers' GPT-2 name, Conv1D's (in, out) layout, the config
    field by field and the fold's bias in the final norm (no transformers needed to convert)."""
    from playground.export.hf import convert, fold_head_bias
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, activation="gelu_tanh", dropout=0.1)
    sd = model.state_dict()
    out = convert(model)
    assert out.config == {
        "model_type": "gpt2", "vocab_size": 15, "n_positions": 16, "n_embd": 16, "n_layer": 2, "n_head": 2,
        "n_inner": 64, "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "architectures": ["GPT2LMHeadModel"], "dtype": "float32",
        "torch_dtype": "float32", "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
        "tie_word_embeddings": False, "use_cache": True, "initializer_range": 0.02}
    delta, residual = fold_head_bias(sd["lm_head.weight"], sd["lm_head.bias"])
    expected = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"],
                "transformer.ln_f.weight": sd["ln_f.weight"], "transformer.ln_f.bias": sd["ln_f.bias"] + delta,
                "lm_head.weight": sd["lm_head.weight"]}
    for i in range(2):
        for name in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            weight = sd[f"h.{i}.{name}.weight"]
            expected[f"transformer.h.{i}.{name}.weight"] = weight if name.startswith("ln") else weight.t()
            expected[f"transformer.h.{i}.{name}.bias"] = sd[f"h.{i}.{name}.bias"]
    assert out.weights.keys() == expected.keys()
    for name, tensor in out.weights.items():
        assert tensor.dtype == torch.float32 and tensor.is_contiguous() and torch.equal(tensor, expected[name]), name
    assert out.architecture == "GPT2LMHeadModel" and out.fold_residual == residual < 1e-6
    assert out.notes[0] == "head bias folded into the final layer norm's bias (15 tokens, width 16: exact)"
    assert out.notes[1] == ("learned positions -> GPT-2: attention and MLP weights transposed for Conv1D; prompt and "
                            "output together take at most 17 tokens (max_new_tokens up to 17 minus the prompt): past "
                            "that transformers raises IndexError, as for any GPT-2") and len(out.notes) == 2
    plain = convert(random_model(tokenizer, head_bias=False, tie_embeddings=True))
    assert plain.fold_residual == 0.0 and len(plain.notes) == 1 and plain.config["tie_word_embeddings"] is True
    assert plain.config["activation_function"] == "gelu"
    wide = CharTokenizer.from_text(WIDE)  # 41 tokens > width 16 + 1: least squares
    approximate = convert(random_model(wide))
    assert approximate.fold_residual > 1e-6
    assert approximate.notes[0] == ("head bias folded into the final layer norm's bias (41 tokens, width 16: "
                                    f"least squares, residual {approximate.fold_residual:.2g})")


def test_the_starcoder2_mapping_by_name_and_config_by_hand():
    from playground.export.hf import convert
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, position="rope", head_bias=False, rope_base=500.0, dropout=0.1)
    sd = model.state_dict()
    out = convert(model)
    assert out.config == {
        "model_type": "starcoder2", "vocab_size": 15, "hidden_size": 16, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "hidden_act": "gelu",
        "max_position_embeddings": 32768, "norm_epsilon": 1e-5, "use_bias": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}, "rope_theta": 500.0, "sliding_window": 16,
        "attention_dropout": 0.1, "residual_dropout": 0.1, "embedding_dropout": 0.1,
        "architectures": ["Starcoder2ForCausalLM"], "dtype": "float32", "torch_dtype": "float32",
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None, "tie_word_embeddings": False,
        "use_cache": True, "initializer_range": 0.02}
    expected = {"model.embed_tokens.weight": sd["wte.weight"], "model.norm.weight": sd["ln_f.weight"],
                "model.norm.bias": sd["ln_f.bias"], "lm_head.weight": sd["lm_head.weight"]}
    for i in range(2):
        for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm"),
                             ("attn.c_proj", "self_attn.o_proj"), ("mlp.c_fc", "mlp.c_fc"), ("mlp.c_proj", "mlp.c_proj")):
            for part in ("weight", "bias"):
                expected[f"model.layers.{i}.{theirs}.{part}"] = sd[f"h.{i}.{ours}.{part}"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):   # the fused rows [q | k | v], 16 each
            for part in ("weight", "bias"):
                expected[f"model.layers.{i}.self_attn.{name}.{part}"] = sd[f"h.{i}.attn.c_attn.{part}"][16 * j:16 * j + 16]
    assert out.weights.keys() == expected.keys() and out.architecture == "Starcoder2ForCausalLM"
    for name, tensor in out.weights.items():
        assert torch.equal(tensor, expected[name]) and tensor.is_contiguous(), name
    assert out.notes == ["rotary positions -> Starcoder2 with sliding window 16: queries, keys and values split "
                         "out of the fused projection"]


def test_what_the_mapping_cannot_express_is_refused():
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)):
        norm.eps = 1e-3
    assert check_mappable(model) == 1e-3   # the norms' own epsilon
    model.h[1].ln_2.eps = 1e-4
    with pytest.raises(ExportError, match="^the layer norms differ from one another or lack a scale or a bias$"):
        check_mappable(model)
    model.h[1].ln_2.eps = 1e-3
    model.ln_f.bias = None
    with pytest.raises(ExportError, match="lack a scale or a bias"):
        check_mappable(model)
    rope = random_model(tokenizer, position="rope")
    assert check_mappable(rope) == 1e-5
    rope.h[1].attn.rotary.inv_freq.mul_(1.01)
    with pytest.raises(ExportError, match="rotary frequencies differ from base 10000"):
        check_mappable(rope)


def test_attention_dropout_off_maps_to_both_architectures():
    from playground.export.hf import convert
    tokenizer = CharTokenizer.from_text(TEXT)
    gpt2 = convert(random_model(tokenizer, dropout=0.15, attention_dropout=False, head_bias=False)).config
    assert (gpt2["attn_pdrop"], gpt2["resid_pdrop"], gpt2["embd_pdrop"]) == (0.0, 0.15, 0.15)
    rotary = convert(random_model(tokenizer, position="rope", head_bias=False, dropout=0.15,
                                  attention_dropout=False)).config
    assert (rotary["attention_dropout"], rotary["residual_dropout"], rotary["embedding_dropout"]) == (0.0, 0.15, 0.15)
