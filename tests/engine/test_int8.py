"""8-bit weights for the cached decoding step: held to the float32 model within a bound, really
8-bit (not the float32 step under another name), and refused in words where they cannot run."""

import pytest
import torch

from playground.engine.config import ModelConfig, SampleConfig
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model import int8
from playground.engine.model.decoding import CachedRows, forward_logits, new_cache
from playground.engine.model.generation import Engine, Request, weights_refusal
from playground.engine.model.gpt import GPT

TOK = CharTokenizer([chr(65 + i) for i in range(40)])
needs_fbgemm = pytest.mark.skipif(bool(int8.refusal()), reason="no fbgemm on this CPU: the refusal is tested below")


def model(position: str, tie: bool = False, bias: bool = True) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=40, n_layer=2, n_head=4, n_embd=64, block_size=16, position=position,
                           tie_embeddings=tie, head_bias=bias)).eval()


def step_log_probs(m: GPT, ids: list[int], weights: str) -> torch.Tensor:
    cache = new_cache(m)
    forward_logits(m, ids[:4], cache)
    rows = CachedRows(m, 1, weights)
    rows.add(cache)
    return torch.log_softmax(torch.cat([rows.step([t]) for t in ids[4:]]), -1)


@needs_fbgemm
@pytest.mark.parametrize("position,tie,bias", [("learned", False, True), ("rope", True, False)])
def test_int8_log_probabilities_stay_near_float32_and_differ_from_it(position, tie, bias):
    m = model(position, tie, bias)
    ids = torch.randint(0, 40, (14,), generator=torch.Generator().manual_seed(1)).tolist()
    exact, eight = step_log_probs(m, ids, "float32"), step_log_probs(m, ids, "int8")
    gap = (exact - eight).abs().max().item()
    assert 1e-5 < gap < 0.05  # 8-bit for real, and close
    # the weights themselves: per-row symmetric int8 reproduces each weight within half a step
    w = m.h[0].mlp.c_fc.weight.detach()
    scale = w.abs().amax(1, keepdim=True) / 127
    assert (torch.round(w / scale) * scale - w).abs().max() <= scale.max() / 2 + 1e-7


@needs_fbgemm
def test_an_int8_engine_decodes_a_batch():
    m = model("rope")
    engine = Engine(m, TOK, capacity=2, weights="int8")
    assert engine.batch.weights == "int8"
    rows = [engine.add(Request((1, 2, 3), SampleConfig(max_new_tokens=5, temperature=0.0))) for _ in range(2)]
    while any(r.finished is None for r in rows):
        engine.step()
    assert all(len(r.ids) == 3 + 5 for r in rows) and rows[0].ids == rows[1].ids


def test_int8_is_refused_in_words_where_it_cannot_run():
    m = model("learned")
    assert weights_refusal(m, "float32") == ""
    assert weights_refusal(m, "int8") == ("" if not int8.refusal() else f"8-bit weights need the cached "
                                                                        f"decoding step: {int8.refusal()}")
    assert "float32 or int8" in weights_refusal(m, "int4")
    with pytest.raises(ValueError, match="the cache is off|fbgemm"):
        Engine(m, TOK, weights="int8", cached=False)
    assert "x86" in int8.refusal(engines=["qnnpack", "none"]) and int8.refusal(engines=["x86"]) == ""


@needs_fbgemm
def test_the_generate_flag_decodes_with_8_bit_weights(tmp_path, capsys, monkeypatch):
    from playground.cli import main
    from playground.engine.model import checkpoint
    m = model("rope")
    path = checkpoint.save(tmp_path / "m.safetensors", checkpoint.Checkpoint(m, TOK, None, {"start_char": "A"}))
    packed = []
    monkeypatch.setattr(int8, "pack", lambda w, b, pack=int8.pack: packed.append(w.shape) or pack(w, b))
    assert main(["generate", str(path), "--prompt", "ABC", "--tokens", "6", "--int8"]) == 0
    assert len(capsys.readouterr().out.strip()) == 3 + 6
    assert len(packed) == 2 * 4 + 1  # four linears a block and the head
