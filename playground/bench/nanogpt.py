"""nanoGPT's Shakespeare recipes, restated here so the bench can time them in the same run.

Written from nanoGPT's published description (README, config/train_shakespeare_char.py), not
copied from it: the same model (learned positions, LayerNorm and Linear without biases, exact
GELU, the head tied to the token embedding, init N(0, 0.02) with residual projections scaled
by 1/sqrt(2 x layers)), the same AdamW (decay 0.1 on matrices only, betas 0.9/0.99, clip 1.0),
the same schedule (linear warm-up over 100 steps, cosine to lr/10 at the last step), random
windows drawn each step, and an evaluation every 250 steps over `eval_iters` batches of each
split, whose time counts as nanoGPT's does. At each evaluation the whole held-out tail is
also scored, with the clock stopped, so both programs are judged by the same figure.

    python -m playground.bench.nanogpt --recipe cpu --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Recipe:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    max_iters: int
    dropout: float
    eval_iters: int
    compile: bool
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    eval_interval: int = 250
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    score_interval: int = 100  # the whole held-out tail is scored this often, clock stopped


RECIPES = {
    # README: "python train.py config/train_shakespeare_char.py --device=cpu --compile=False
    # --eval_iters=20 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
    # --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0"
    "cpu": Recipe(4, 4, 128, 64, 12, 2000, 0.0, 20, False),
    # config/train_shakespeare_char.py as it is, on a GPU (bf16 autocast, torch.compile)
    "gpu": Recipe(6, 6, 384, 256, 64, 5000, 0.2, 200, True),
}


class Block(nn.Module):
    def __init__(self, r: Recipe):
        super().__init__()
        C = r.n_embd
        self.n_head, self.dropout = r.n_head, r.dropout
        self.ln_1 = nn.LayerNorm(C, bias=False)
        self.c_attn = nn.Linear(C, 3 * C, bias=False)
        self.c_proj = nn.Linear(C, C, bias=False)
        self.ln_2 = nn.LayerNorm(C, bias=False)
        self.c_fc = nn.Linear(C, 4 * C, bias=False)
        self.mlp_proj = nn.Linear(4 * C, C, bias=False)
        self.drop = nn.Dropout(r.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        x = x + self.drop(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class NanoGPT(nn.Module):
    def __init__(self, r: Recipe, vocab_size: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, r.n_embd)
        self.wpe = nn.Embedding(r.block_size, r.n_embd)
        self.drop = nn.Dropout(r.dropout)
        self.h = nn.ModuleList([Block(r) for _ in range(r.n_layer)])
        self.ln_f = nn.LayerNorm(r.n_embd, bias=False)
        self.lm_head = nn.Linear(r.n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        for name, p in self.named_parameters():
            if name.endswith(("c_proj.weight", "mlp_proj.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * r.n_layer))

    def forward(self, idx: torch.Tensor, targets=None):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)),
                                                            targets.view(-1))
        return logits, loss


def lr_at(it: int, r: Recipe) -> float:
    if it < r.warmup_iters:
        return r.learning_rate * (it + 1) / (r.warmup_iters + 1)
    if it > r.max_iters:
        return r.min_lr
    ratio = (it - r.warmup_iters) / (r.max_iters - r.warmup_iters)
    return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r.learning_rate - r.min_lr)


def train(r: Recipe, text: str, device: str = "cpu", seed: int = 1337) -> dict:
    """Run the recipe; returns the evaluations as (step, seconds, estimated val, full val)."""
    from playground.engine.analysis.evaluation import full_loss
    from playground.engine.data.corpus import build_corpus
    torch.manual_seed(seed)
    corpus = build_corpus("shakespeare", text, 0.1, r.block_size)
    train_ids, val_ids = corpus.train_ids().long().to(device), corpus.val_ids().long()
    model = NanoGPT(r, corpus.tokenizer.vocab_size).to(device)
    opt = _optimizer(model, r, fused=device.startswith("cuda"))
    train_model = torch.compile(model) if r.compile else model
    cast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda")
            else torch.autocast("cpu", enabled=False))

    @torch.no_grad()
    def estimate() -> dict:
        model.eval()
        out = {}
        for split, data in (("train", train_ids), ("val", val_ids.to(device))):
            losses = []
            for _ in range(r.eval_iters):
                x, y = _batch(data, r)
                with cast:
                    losses.append(train_model(x, y)[1].item())
            out[split] = sum(losses) / len(losses)
        model.train()
        return out

    compile_s = 0.0
    if r.compile:  # one-time compilation, kept off the clock (as the goal states for both)
        t = time.perf_counter()
        x, y = _batch(train_ids, r)
        with cast:
            train_model(x, y)[1].backward()
        opt.zero_grad(set_to_none=True)
        estimate()
        compile_s = time.perf_counter() - t
    evals, step_times, clock, paused = [], [], time.perf_counter(), 0.0
    for it in range(r.max_iters + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(it, r)
        if it % r.eval_interval == 0 or it % r.score_interval == 0:
            est = estimate() if it % r.eval_interval == 0 else {"val": None}
            t = time.perf_counter()
            # the whole tail, clock stopped: the same figure the bench takes of our runs
            full = full_loss(model, val_ids.to(device), r.block_size)
            evals.append({"step": it, "seconds": t - clock - paused, "val_estimate": est["val"],
                          "val_full": full})
            paused += time.perf_counter() - t
        step_times.append(_timed_step(model, train_model, opt, train_ids, r, cast))
    seconds = time.perf_counter() - clock - paused
    # the steady pace, as the bench reads ours: the median step after the first 20
    step_s = statistics.median(step_times[20:] or step_times)
    return {"recipe": asdict(r), "device": device, "evals": evals, "train_seconds": seconds,
            "compile_seconds": compile_s, "step_s": step_s,
            "tokens_per_s": r.batch_size * r.block_size / step_s,
            "params": sum(p.numel() for p in model.parameters())}


def step_seconds(r: Recipe, train_ids: torch.Tensor, vocab_size: int, steps: int, seed: int = 0) -> float:
    """The recipe's median training step (after 10), on the CPU, in this process: for timing
    side by side with ours, alternated, which separate processes cannot give on a machine whose
    speed varies between processes."""
    torch.manual_seed(seed)
    model = NanoGPT(r, vocab_size)
    opt, data = _optimizer(model, r), train_ids.long()
    times = [_timed_step(model, model, opt, data, r, contextlib.nullcontext()) for _ in range(steps)]
    return statistics.median(times[10:])


def _optimizer(model: NanoGPT, r: Recipe, fused: bool = False) -> torch.optim.AdamW:
    """nanoGPT's AdamW: weight decay on the matrices only."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": r.weight_decay},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=r.learning_rate, betas=(r.beta1, r.beta2), fused=fused)


def _batch(data: torch.Tensor, r: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows and their next characters, as nanoGPT draws them."""
    ix = torch.randint(len(data) - r.block_size, (r.batch_size,), device=data.device)
    offsets = torch.arange(r.block_size, device=data.device)
    return data[ix[:, None] + offsets], data[ix[:, None] + offsets + 1]


def _timed_step(model: NanoGPT, train_model, opt, data: torch.Tensor, r: Recipe, cast) -> float:
    """One training step (the batch drawn, forward, backward, clipping, AdamW); its seconds."""
    t = time.perf_counter()
    x, y = _batch(data, r)
    with cast:
        _, loss = train_model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss.item()  # nanoGPT logs every step on the CPU recipe (--log_interval=1)
    return time.perf_counter() - t


def time_to(evals: list[dict], goal: float, key: str = "val_full") -> float | None:
    """Seconds of training until the loss first reaches the goal, interpolated linearly between
    the two scorings around it (the kinder reading for the recipe); None if it never does."""
    prev = None
    for e in evals:
        if e[key] is None:
            continue
        if e[key] <= goal:
            if prev is None or prev[key] == e[key]:
                return e["seconds"]
            share = (prev[key] - goal) / (prev[key] - e[key])
            return prev["seconds"] + share * (e["seconds"] - prev["seconds"])
        prev = e
    return None


def time_or_bound(evals: list[dict], goal: float, whole_s: float, key: str = "val_full"
                  ) -> tuple[float, bool]:
    """(seconds, reached): the time to the goal, or, when the run never reached it, the whole
    run's time, a lower bound on the time it would need (a share of it is an upper bound)."""
    seconds = time_to(evals, goal, key)
    return (seconds, True) if seconds is not None else (whole_s, False)


def main(argv=None) -> int:
    from playground.engine.data.corpus import find_shakespeare, read_text_file
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, help="fewer iterations (a quick bench)")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    r = RECIPES[args.recipe]
    if args.steps:
        r = Recipe(**{**asdict(r), "max_iters": args.steps})
    result = train(r, read_text_file(find_shakespeare()), args.device)
    with open(args.json, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
