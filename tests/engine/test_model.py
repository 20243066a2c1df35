"""The model: exact parameter counts, causality, determinism, the KV cache."""

import pytest
import torch

from playground.engine.config import ModelConfig
from playground.engine.model.decoding import KVCache, new_cache
from playground.engine.model.gpt import GPT
from playground.engine.model.param_count import count_params
from playground.engine.presets import PRESETS


def test_seed_preset_has_exactly_103821_parameters():
    cfg = PRESETS["seed"].model
    assert cfg.vocab_size == 13
    assert GPT(cfg).num_params() == 103_821
    assert count_params(cfg) == 103_821


def test_config_param_formula_matches_built_models():
    for cfg in [ModelConfig(vocab_size=65, n_layer=4, n_head=4, n_embd=128, block_size=64),
                ModelConfig(vocab_size=7, n_layer=1, n_head=1, n_embd=8, block_size=3)]:
        assert count_params(cfg) == GPT(cfg).num_params()


def test_changing_a_future_character_never_changes_earlier_logits(tiny_model_cfg):
    torch.manual_seed(0)
    model = GPT(tiny_model_cfg).eval()
    idx = torch.randint(13, (2, 8))
    base, _ = model(idx)
    for t in range(8):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 13
        out, _ = model(changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"position {t} leaked backwards"
        assert not torch.allclose(out[:, t:], base[:, t:])


def test_identical_seeds_give_identical_models_and_outputs(tiny_model_cfg):
    idx = torch.randint(13, (3, 8), generator=torch.Generator().manual_seed(1))
    outs = []
    for _ in range(2):
        torch.manual_seed(42)
        outs.append(GPT(tiny_model_cfg)(idx)[0])
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(43)
    assert not torch.equal(GPT(tiny_model_cfg)(idx)[0], outs[0])


def test_initial_loss_is_near_ln_vocab(tiny_model_cfg):
    torch.manual_seed(0)
    model = GPT(tiny_model_cfg)
    idx = torch.randint(13, (16, 8))
    _, loss = model(idx, idx)
    assert abs(loss.item() - torch.log(torch.tensor(13.0)).item()) < 0.15


def test_kv_cache_gives_the_same_logits_as_the_full_forward():
    cfg = ModelConfig(vocab_size=11, n_layer=3, n_head=4, n_embd=32, block_size=16)
    torch.manual_seed(3)
    model = GPT(cfg).eval()
    idx = torch.randint(11, (1, 16))
    full, _ = model(idx)
    cache = KVCache(cfg.n_layer)
    pieces = [model(idx[:, :5], cache=cache)[0]]
    for t in range(5, 16):
        pieces.append(model(idx[:, t:t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_attention_maps_are_causal_probabilities(tiny_model_cfg):
    torch.manual_seed(0)
    model = GPT(tiny_model_cfg).eval()
    maps = model.attention_maps(torch.randint(13, (1, 8)))
    assert maps.shape == (1, 1, 2, 8, 8)
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 1, 2, 8))
    assert torch.all(maps.triu(1) == 0)


def test_rope_model_cache_matches_the_windowed_full_forward():
    cfg = ModelConfig(vocab_size=11, n_layer=3, n_head=2, n_embd=16, block_size=6, position="rope")
    torch.manual_seed(4)
    model = GPT(cfg).eval()
    idx = torch.randint(11, (1, 40))  # far longer than the window of 6
    full, _ = model(idx)
    cache = new_cache(model)
    pieces = [model(idx[:, :9], cache=cache)[0]]
    for t in range(9, 40):
        pieces.append(model(idx[:, t:t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    # the window is real: a character more than 3 x 5 positions back cannot matter
    changed = idx.clone()
    changed[0, 0] = (changed[0, 0] + 1) % 11
    assert torch.equal(model(changed)[0][0, 16:], full[0, 16:])
    assert not torch.equal(model(changed)[0][0, :3], full[0, :3])


def test_rope_has_no_position_table_and_counts_match():
    cfg = ModelConfig(vocab_size=13, n_layer=2, n_head=4, n_embd=64, block_size=32, position="rope")
    model = GPT(cfg)
    assert model.wpe is None and model.num_params() == count_params(cfg) == 103_821 - 32 * 64


def test_learned_positions_refuse_sequences_beyond_the_block(tiny_model_cfg):
    import pytest
    with pytest.raises(ValueError, match="exceeds block size"):
        GPT(tiny_model_cfg)(torch.zeros(1, 9, dtype=torch.long))


def test_attention_maps_are_the_scaled_dot_product_by_hand():
    """One head of width 4 with queries 3x and keys 1x the input: the weight of key j for
    query i is softmax_j(3 x_i . x_j / sqrt(4)) over j <= i, computed here in plain floats."""
    import math
    attn = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=4)).h[0].attn
    with torch.no_grad():
        attn.c_attn.weight.copy_(torch.cat([3 * torch.eye(4), torch.eye(4), torch.eye(4)]))
        attn.c_attn.bias.zero_()
    rows = [[1.0, 0.0, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0], [0.0, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    shown = attn.weights(torch.tensor([rows]))[0, 0]
    for i, q in enumerate(rows):
        scores = [3 * sum(a * b for a, b in zip(q, k)) / math.sqrt(4) for k in rows[:i + 1]]
        total = sum(math.exp(s) for s in scores)
        expected = [math.exp(s) / total for s in scores] + [0.0] * (3 - i)
        assert shown[i].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_attention_maps_are_the_weights_the_model_attends_with(position):
    """The maps the window shows, applied to the values, give the attention layer's output."""
    cfg = ModelConfig(vocab_size=13, n_layer=2, n_head=2, n_embd=16, block_size=8, position=position)
    torch.manual_seed(1)
    model = GPT(cfg).eval()
    with torch.no_grad():  # away from the initialisation, so the scores are far from uniform
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    idx = torch.randint(13, (1, 8), generator=torch.Generator().manual_seed(2))
    maps = model.attention_maps(idx)
    with torch.no_grad():
        x = model.wte(idx) + (model.wpe(torch.arange(8)) if model.wpe is not None else 0)
        for layer, block in enumerate(model.h):
            h = block.ln_1(x)
            _, _, v = block.attn.heads(h, 0)  # (1, nh, T, hs)
            y = (maps[layer] @ v).transpose(1, 2).reshape(1, 8, 16)
            torch.testing.assert_close(block.attn.c_proj(y), block.attn(h), rtol=1e-5, atol=1e-6)
            x = block(x)


def test_rotary_turns_each_channel_pair_by_its_position_times_its_frequency():
    """Head size 4, base 10000: pairs (0, 2) and (1, 3) turn by t and t/100 radians at
    position t, counter-clockwise (x1 cos - x2 sin, x1 sin + x2 cos), as Llama and
    transformers' rotate_half do; `start` shifts the positions."""
    import math
    attn = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=8,
                           position="rope")).h[0].attn
    with torch.no_grad():  # queries, keys and values all equal the input
        attn.c_attn.weight.copy_(torch.cat([torch.eye(4)] * 3))
        attn.c_attn.bias.zero_()
    x = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    for start in (0, 5):
        q, k, v = attn.heads(x, start)
        t = [start + i for i in range(3)]
        expected = [[math.cos(t[0]), 0.0, math.sin(t[0]), 0.0],
                    [0.0, math.cos(t[1] / 100), 0.0, math.sin(t[1] / 100)],
                    [-math.sin(t[2]), 0.0, math.cos(t[2]), 0.0]]
        for got in (q, k):
            assert got[0, 0].flatten().tolist() == pytest.approx(sum(expected, []), abs=1e-6)
        assert torch.equal(v[0, 0], x[0])  # values are not turned


# -- dropout: cheaper CPU masks (gpt.dropout), the same rule as F.dropout -------------------
def test_dropout_zeroes_p_of_the_elements_and_scales_the_rest_exactly():
    from playground.engine.model.gpt import DROP_LEVELS, dropout
    torch.manual_seed(0)
    x = torch.rand(1000, 1001) + 0.5   # an odd count: the last 64-bit draw is cut short
    y = dropout(x, 0.1)
    dropped = (y == 0)
    levels = round(0.1 * DROP_LEVELS)   # 6,554 of 65,536: p within 1e-5 of 0.1
    # 1,001,000 elements: the binomial's standard deviation is 0.0003, so 0.002 is 6.6 of them
    assert abs(dropped.float().mean().item() - levels / DROP_LEVELS) < 0.002
    kept = ~dropped
    scale = DROP_LEVELS / (DROP_LEVELS - levels)
    assert torch.allclose(y[kept], x[kept] * scale, rtol=1e-6, atol=0)
    # every quarter of a 64-bit draw decides its own element (no quarter always keeps)
    assert all(dropped.flatten()[i::4].float().mean() > 0.09 for i in range(4))
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0) is x
    assert dropout(x, 1e-6) is x                                   # rounds to no drop at all
    assert torch.count_nonzero(dropout(x, 1.0)) == 0


def test_dropout_gradient_is_its_mask_and_masks_follow_the_seed():
    from playground.engine.model.gpt import dropout
    x = torch.full((64, 33), 2.0, requires_grad=True)
    torch.manual_seed(7)
    y = dropout(x, 0.25)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach() / 2.0)   # d(sum)/dx: the mask times its scale
    torch.manual_seed(7)
    assert torch.equal(dropout(x, 0.25), y)
    assert not torch.equal(dropout(x, 0.25), y)     # the next draw is another mask


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_training_with_dropout_is_the_plain_model_but_for_its_masks(position, monkeypatch):
    """With dropout, attention on the CPU is computed explicitly (the cheaper masks need the
    probabilities): masks that keep everything must give exactly what evaluation does."""
    from playground.engine.model import gpt as gpt_module
    cfg = ModelConfig(vocab_size=13, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.3,
                      position=position)
    torch.manual_seed(3)
    model = GPT(cfg)
    idx = torch.randint(13, (3, 8))
    expected = model.eval()(idx)[0]
    calls = []
    monkeypatch.setattr(gpt_module, "dropout", lambda x, p, training=True: calls.append(x.shape) or x)
    got = model.train()(idx)[0]
    assert torch.allclose(got, expected, atol=1e-5)
    # embeddings, then per layer the attention probabilities, its output and the MLP's
    assert calls[0] == (3, 8, 16) and calls[1] == (3, 2, 8, 8) and len(calls) == 1 + 3 * 2
    monkeypatch.undo()
    assert not torch.allclose(model.train()(idx)[0], expected, atol=1e-3)


def test_without_attention_dropout_only_the_residual_stream_and_embeddings_are_masked(monkeypatch):
    from playground.engine.model import gpt as gpt_module
    cfg = ModelConfig(vocab_size=13, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.3,
                      attention_dropout=False, position="rope")
    model = GPT(cfg).train()
    calls = []
    monkeypatch.setattr(gpt_module, "dropout", lambda x, p, training=True: calls.append(x.shape) or x)
    model(torch.randint(13, (3, 8)))
    assert calls == [(3, 8, 16)] * (1 + 2 * 2)   # embeddings, then attention's and the MLP's outputs
