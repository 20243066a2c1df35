"""The CPU Muon: torch's algorithm and state, with its orthogonalisation in float32."""

import torch

from playground.engine.config import TrainConfig
from playground.engine.model.gpt import GPT
from playground.engine.model.muon import Muon, orthogonalize
from playground.engine.model.optimizers import build_optimizers

COEFFICIENTS, STEPS, EPS = (3.4445, -4.775, 2.0315), 5, 1e-7


def test_orthogonalize_matches_the_iteration_in_float64():
    torch.manual_seed(0)
    for shape in [(64, 64), (96, 32), (32, 96)]:
        g = torch.randn(shape)
        x = g.double().T if shape[0] > shape[1] else g.double()
        x = x / x.norm()
        for _ in range(STEPS):
            gram = x @ x.T
            x = COEFFICIENTS[0] * x + (COEFFICIENTS[1] * gram + COEFFICIENTS[2] * gram @ gram) @ x
        expected = x.T if shape[0] > shape[1] else x
        assert torch.allclose(orthogonalize(g, COEFFICIENTS, STEPS, EPS).double(), expected, atol=1e-5)


def test_steps_like_torchs_muon_within_its_bfloat16_rounding():
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(48, 32))
    b = torch.nn.Parameter(a.detach().clone())
    ours = Muon([a], lr=0.02, weight_decay=0.01, adjust_lr_fn="original")
    theirs = torch.optim.Muon([b], lr=0.02, weight_decay=0.01, adjust_lr_fn="original")
    start = a.detach().clone()
    for step in range(3):
        grad = torch.randn(48, 32, generator=torch.Generator().manual_seed(step))
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
        assert torch.equal(ours.state[a]["momentum_buffer"], theirs.state[b]["momentum_buffer"])
    moved_ours, moved_theirs = a.detach() - start, b.detach() - start
    assert (moved_ours - moved_theirs).abs().max() <= 0.05 * moved_theirs.abs().max()
    # the same state format: torch's state drives ours
    c = torch.nn.Parameter(b.detach().clone())
    again = Muon([c], lr=0.02, weight_decay=0.01, adjust_lr_fn="original")
    again.load_state_dict(theirs.state_dict())
    assert torch.equal(again.state[c]["momentum_buffer"], theirs.state[b]["momentum_buffer"])


def test_the_cpu_runs_use_it():
    from playground.engine.config import ModelConfig
    model = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=8, block_size=4))
    kinds = [type(opt) for opt, _ in build_optimizers(model, TrainConfig(optimizer="muon"))]
    assert kinds == [torch.optim.AdamW, Muon]


def test_muon_takes_the_blocks_weight_matrices_and_adamw_the_rest():
    from playground.engine.config import ModelConfig
    model = GPT(ModelConfig(vocab_size=5, n_layer=2, n_head=1, n_embd=8, block_size=4))
    model.h[1].mlp.c_fc.weight.requires_grad_(False)  # frozen: in neither
    cfg = TrainConfig(optimizer="muon", learning_rate=3e-3, muon_lr=0.05, weight_decay=0.2,
                      beta1=0.7, beta2=0.9)
    (adam, adam_lr), (muon, muon_lr) = build_optimizers(model, cfg)
    assert (adam_lr, muon_lr) == (3e-3, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}

    def group_names(opt):
        return [(g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"]))
                for g in opt.param_groups]
    hidden = sorted(f"h.{i}.{m}.weight" for i in (0, 1)
                    for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))
    hidden.remove("h.1.mlp.c_fc.weight")
    assert group_names(muon) == [(0.05, 0.2, hidden)]
    assert muon.param_groups[0]["adjust_lr_fn"] == "original"
    vectors = sorted(n for n in names.values() if n.endswith(".bias") or ".ln_" in n or n.startswith("ln_"))
    assert group_names(adam) == [(3e-3, 0.2, ["lm_head.weight", "wpe.weight", "wte.weight"]),
                                 (3e-3, 0.0, vectors)]
    assert all(g["betas"] == (0.7, 0.9) for g in adam.param_groups)
    fused_on_cpu = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)
    assert adam.defaults["fused"] is fused_on_cpu
