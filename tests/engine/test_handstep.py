"""The hand-written training step: the same loss and the same gradients as autograd on
GPT.forward, for any shape it accepts, and the trainer picks it only where it applies."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.engine.config import ModelConfig
from playground.engine.events import Step
from playground.engine.handstep import HandStep, supports
from playground.engine.model import GPT
from playground.engine.train import Trainer


def _autograd(model, x, y, w):
    model.zero_grad(set_to_none=True)
    loss = model(x, y, weights=w)[1]
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_same_gradients(model, x, y, w):
    loss, expected = _autograd(model, x, y, w)
    model.zero_grad(set_to_none=True)
    hand_loss = HandStep(model)(x, y, w).item()
    assert hand_loss == pytest.approx(loss, rel=1e-5)
    # float32 sums in another order: relative to each gradient, and to the largest one for
    # gradients that are nearly zero (cancellations)
    floor = 1e-6 * max(g.abs().max().item() for g in expected.values())
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        error = (p.grad - expected[name]).abs().max().item()
        assert error <= 1e-4 * expected[name].abs().max().item() + floor, name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=st.integers(1, 3), heads=st.sampled_from([1, 2, 4]), head_size=st.sampled_from([2, 4, 8]),
       block=st.integers(1, 12), short=st.integers(0, 3), rows=st.integers(1, 5),
       vocab=st.integers(2, 20), weighted=st.booleans(), seed=st.integers(0, 1000))
def test_gradients_match_autograd(layers, heads, head_size, block, short, rows, vocab, weighted, seed):
    torch.manual_seed(seed)
    # width >= 4: a layer norm over 2 numbers outputs +-1 whatever comes in, so its
    # gradients are pure float cancellation, which no two summation orders agree on
    width = max(heads * head_size, 4)
    cfg = ModelConfig(vocab_size=vocab, n_layer=layers, n_head=heads, n_embd=width,
                      block_size=block, dropout=0.0)
    model = GPT(cfg)
    with torch.no_grad():  # away from the initialisation, so every path carries signal
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    T = max(1, block - short)  # sequences shorter than the block too
    x, y = torch.randint(vocab, (rows, T)), torch.randint(vocab, (rows, T))
    w = torch.rand(rows) + 0.1 if weighted else None
    _assert_same_gradients(model, x, y, None if w is None else w / w.sum())


def test_the_seed_model_on_a_merged_batch_matches_autograd(phrase_corpus):
    from playground.engine.corpus import get_weighted_batch
    from playground.engine.presets import PRESETS
    torch.manual_seed(0)
    model = GPT(PRESETS["seed"].model)
    x, y, w = get_weighted_batch(phrase_corpus.train_ids(), 32, 32, torch.Generator().manual_seed(3))
    assert w is not None and len(w) < 32  # repeated windows were merged
    _assert_same_gradients(model, x, y, w)


def test_refuses_what_it_does_not_cover():
    base = ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=4, dropout=0.0)
    assert supports(GPT(base), torch.device("cpu"))
    assert not supports(GPT(base.replace(dropout=0.1)), torch.device("cpu"))
    assert not supports(GPT(base.replace(position="rope")), torch.device("cpu"))
    assert not supports(GPT(base), torch.device("meta"))
    with pytest.raises(ValueError):
        HandStep(GPT(base.replace(position="rope")))
    with pytest.raises(ValueError, match="block size"):
        HandStep(GPT(base))(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long))


def test_trainer_uses_it_by_default_and_trains_like_autograd(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    cfg = tiny_train_cfg.replace(max_steps=30)
    hand = Trainer(tiny_model_cfg, cfg, phrase_corpus)
    plain = Trainer(tiny_model_cfg, cfg, phrase_corpus, autograd=True)
    assert hand.hand_step is not None and plain.hand_step is None
    a = [e.loss for e in hand.run() if isinstance(e, Step)]
    b = [e.loss for e in plain.run() if isinstance(e, Step)]
    assert len(a) == len(b) == 30
    assert a == pytest.approx(b, rel=1e-3)  # float sums in another order, nothing more
    assert a[-1] < a[0]
    rope = Trainer(tiny_model_cfg.replace(position="rope"), cfg, phrase_corpus)
    assert rope.hand_step is None
