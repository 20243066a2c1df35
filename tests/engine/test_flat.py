"""FlatAdamW: the same updates as torch's AdamW, and a state that moves between the two."""

import pytest
import torch

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.model.flat_adamw import FlatAdamW
from playground.engine.model.gpt import GPT
from playground.engine.model.optimizers import build_optimizers
from playground.engine.training.trainer import Trainer

CFG = ModelConfig(vocab_size=7, n_layer=2, n_head=2, n_embd=8, block_size=6, dropout=0.0)
TRAIN = TrainConfig(learning_rate=1e-2, weight_decay=0.1, beta1=0.8, beta2=0.95)


def _pair(seed=0):
    torch.manual_seed(seed)
    a = GPT(CFG)
    b = GPT(CFG)
    b.load_state_dict(a.state_dict())
    return a, b


def _set_grads(models, step):
    gen = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(p.shape, generator=gen) for p in models[0].parameters()]
    for model in models:
        for p, g in zip(model.parameters(), grads):
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)  # in place: FlatAdamW's grads are views of its buffer


def _step(opt, lr):
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()


def _assert_same_weights(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name


def test_steps_like_torch_adamw_with_decay_groups_and_a_schedule():
    plain_model, flat_model = _pair()
    (plain, _), = build_optimizers(plain_model, TRAIN)
    (inner, _), = build_optimizers(flat_model, TRAIN)
    assert len(inner.param_groups) == 2  # matrices decay, vectors do not
    flat = FlatAdamW(inner, flat_model)
    before = [p.detach().clone() for p in flat_model.parameters()]
    for step, lr in enumerate([1e-2, 5e-3, 2e-2, 1e-3, 1e-2]):
        _set_grads([plain_model, flat_model], step)
        _step(plain, lr)
        _step(flat, lr)
        _assert_same_weights(plain_model, flat_model)
    assert any(not torch.equal(b, p) for b, p in zip(before, flat_model.parameters()))


def test_its_state_resumes_in_a_plain_adamw_and_the_other_way_round():
    models = _pair()
    (plain, _), = build_optimizers(models[0], TRAIN)
    flat = FlatAdamW(build_optimizers(models[1], TRAIN)[0][0], models[1])
    for step in range(3):
        _set_grads(models, step)
        _step(plain, 1e-2)
        _step(flat, 1e-2)
    saved_flat, saved_plain = flat.state_dict(), plain.state_dict()
    assert saved_flat["state"][0]["exp_avg"].shape == next(models[1].parameters()).shape
    # cross over: the flat state drives a plain AdamW, the plain state a FlatAdamW
    a, b = _pair(seed=1)
    a.load_state_dict(models[1].state_dict())
    b.load_state_dict(models[0].state_dict())
    plain2 = build_optimizers(a, TRAIN)[0][0]
    plain2.load_state_dict(saved_flat)
    flat2 = FlatAdamW(build_optimizers(b, TRAIN)[0][0], b)
    flat2.load_state_dict(saved_plain)
    for step in range(3, 6):
        _set_grads([a, b], step)
        _step(plain2, 1e-2)
        _step(flat2, 1e-2)
        _assert_same_weights(a, b)


def test_the_trainer_uses_it_only_with_the_hand_step_and_adamw(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    flat = Trainer(tiny_model_cfg, tiny_train_cfg, phrase_corpus)
    assert isinstance(flat.optimizers[0][0], FlatAdamW)
    assert not isinstance(Trainer(tiny_model_cfg, tiny_train_cfg, phrase_corpus, autograd=True)
                          .optimizers[0][0], FlatAdamW)
    muon = Trainer(tiny_model_cfg, tiny_train_cfg.replace(optimizer="muon"), phrase_corpus)
    assert not any(isinstance(opt, FlatAdamW) for opt, _ in muon.optimizers)


def test_a_flat_trained_model_saves_opens_and_continues(tmp_path, tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    from playground.engine.model import checkpoint
    trainer = Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=10), phrase_corpus)
    list(trainer.run())
    path = checkpoint.save(tmp_path / "m", trainer.checkpoint())
    loaded = checkpoint.load(path)
    for (name, p), q in zip(trainer.model.named_parameters(), loaded.model.parameters()):
        assert torch.equal(p, q), name
    again = Trainer.resume(loaded, phrase_corpus, tiny_train_cfg.replace(max_steps=5))
    moments = again.optimizers[0][0].state_dict()["state"]
    assert moments and all(float(s["step"]) == 10 for s in moments.values())
    done = list(again.run())[-1]
    assert done.status == "completed" and done.step == 15


def test_refuses_amsgrad():
    model = GPT(CFG)
    with pytest.raises(ValueError, match="amsgrad"):
        FlatAdamW(torch.optim.AdamW(model.parameters(), amsgrad=True), model)


def _no_decay(name):
    """The rule stated by name: biases and layer norms do not decay, every weight matrix does."""
    return name.endswith(".bias") or name.split(".")[-2] in ("ln_1", "ln_2", "ln_f")


def test_adamw_groups_decay_matrices_only_and_skips_frozen_parameters():
    model = GPT(CFG)
    model.wpe.weight.requires_grad_(False)  # frozen: no optimizer holds it
    (opt, lr), = build_optimizers(model, TRAIN)
    assert lr == 1e-2 and type(opt) is torch.optim.AdamW
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [(g["weight_decay"], sorted(names[id(p)] for p in g["params"])) for g in opt.param_groups]
    trainable = [n for n, p in model.named_parameters() if n != "wpe.weight"]
    assert groups == [(0.1, sorted(n for n in trainable if not _no_decay(n))),
                      (0.0, sorted(n for n in trainable if _no_decay(n)))]
    assert len(groups[0][1]) == 2 + 4 * CFG.n_layer  # wte, lm_head and four per block
    assert all(g["lr"] == 1e-2 and g["betas"] == (0.8, 0.95) for g in opt.param_groups)
    # fused AdamW runs on the CPU from torch 2.4 on; the choice is made once and kept
    fused_on_cpu = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)
    assert opt.defaults["fused"] is fused_on_cpu
    assert build_optimizers(GPT(CFG), TRAIN)[0][0].defaults["fused"] is fused_on_cpu


def test_adamw_without_decay_is_one_group_of_every_parameter():
    model = GPT(CFG)
    (opt, lr), = build_optimizers(model, TRAIN.replace(weight_decay=0.0, learning_rate=2e-3))
    assert lr == 2e-3
    (group,) = opt.param_groups  # one group is one fused call
    assert group["weight_decay"] == 0.0 and group["lr"] == 2e-3
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}
    assert len(group["params"]) == len(list(model.parameters()))
