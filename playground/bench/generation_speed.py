"""Generation speed at batch 1 for the 4x128, block 64 model, and proof that the fast path
gives exactly the plain path's probabilities."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from playground.engine.config import ModelConfig, SampleConfig
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model.decoding import block_params, plain_logits
from playground.engine.model.generation import stream_tokens
from playground.engine.model.gpt import GPT

RATIO = 5.0   # the cached rotary decoder against the seed's loop (the chapter's generate)
NANOGPT = 220


def _speed(model: GPT, tok: CharTokenizer, chars: int, use_cache: bool, seeds) -> float:
    rates = []
    for seed in seeds:
        cfg = SampleConfig(max_new_chars=chars, temperature=1.0, seed=seed)
        t0 = time.perf_counter()
        n = sum(1 for _ in stream_tokens(model, tok, "\n", cfg, use_cache=use_cache))
        rates.append(n / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


def alternated(model: GPT, tok: CharTokenizer, chars: int, repeats: int) -> tuple[float, float]:
    """Characters per second of the cached path and of the seed's loop, one run of each in
    turn (the machine's speed drifts: measured one after the other, the ratio moved by 20%);
    the medians."""
    fast, seed = [], []
    for r in range(repeats):
        fast.append(_speed(model, tok, chars, True, [r]))
        seed.append(seed_loop_rate(model, chars, 1, first_seed=r))
    return sorted(fast)[repeats // 2], sorted(seed)[repeats // 2]


def lean_window_logits(model: GPT):
    """The question issue 15 asked: could a leaner windowed forward lift learned positions?
    Logits (V,) after a window of ids (at most the block), with bare functional calls on
    detached weights, and the last layer carrying only the final position past its keys and
    values. Not a product path: the bench measures it against the plain loop (and a test
    holds it to the model)."""
    cfg = model.config
    C, nh = cfg.n_embd, cfg.n_head
    hs = C // nh
    layers = [[p.detach() for p in block_params(b)] for b in model.h]
    wte, wpe = model.wte.weight.detach(), model.wpe.weight.detach()
    lnf = (model.ln_f.weight.detach(), model.ln_f.bias.detach())
    head_b = model.lm_head.bias.detach() if model.lm_head.bias is not None else None
    head_w = model.lm_head.weight.detach()

    @torch.no_grad()
    def logits(ids: torch.Tensor) -> torch.Tensor:
        n = len(ids)
        x = wte[ids] + wpe[:n]
        for i, (w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wm, bm) in enumerate(layers):
            h = F.layer_norm(x, (C,), w1, b1)
            if i == len(layers) - 1:  # keys and values for the window, a query for its end
                kv = F.linear(h, wa[C:], ba[C:]).view(n, 2, nh, hs).permute(1, 2, 0, 3)
                q = F.linear(h[-1:], wa[:C], ba[:C]).view(1, nh, hs).transpose(0, 1)
                y = F.scaled_dot_product_attention(q, kv[0], kv[1]).transpose(0, 1)
                x = x[-1:] + F.linear(y.reshape(1, C), wp, bp)
            else:
                qkv = F.linear(h, wa, ba).view(n, 3, nh, hs).permute(1, 2, 0, 3)
                y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
                x = x + F.linear(y.transpose(0, 1).reshape(n, C), wp, bp)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), w2, b2), wf, bf)), wm, bm)
        return F.linear(F.layer_norm(x[-1], (C,), *lnf), head_w, head_b)
    return logits


def seed_loop_rate(model: GPT, chars: int, repeats: int, first_seed: int = 0) -> float:
    """Characters per second of the chapter's generate on the same model, as the seed wrote it:
    the whole cropped window, idx[:, -block:], through the model for every character, then
    softmax at temperature 1 and a draw."""
    T, rates = model.config.block_size, []
    with torch.no_grad():
        for seed in range(first_seed, first_seed + repeats):
            torch.manual_seed(seed)
            idx = torch.zeros(1, 1, dtype=torch.long)
            t0 = time.perf_counter()
            for _ in range(chars):
                logits, _ = model(idx[:, -T:])
                probs = F.softmax(logits[:, -1, :] / 1.0, dim=-1)
                idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
            rates.append(chars / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


def _window_rates(model: GPT, chars: int, repeats: int) -> tuple[float, float]:
    """Characters per second past the block: the plain loop against the lean windowed forward,
    alternated, the same windows for both."""
    T = model.config.block_size
    seq = torch.randint(0, model.config.vocab_size, (T + chars,), generator=torch.Generator().manual_seed(5))
    lean, plain_rates, lean_rates = lean_window_logits(model), [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(chars):
            plain_logits(model, seq[:T + 1 + i].tolist())
        plain_rates.append(chars / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(chars):
            lean(seq[i + 1:T + 1 + i])
        lean_rates.append(chars / (time.perf_counter() - t0))
    return sorted(plain_rates)[len(plain_rates) // 2], sorted(lean_rates)[len(lean_rates) // 2]


def _max_prob_gap(model: GPT, tok: CharTokenizer, chars: int) -> float:
    cfg = SampleConfig(max_new_chars=chars, temperature=1.0, seed=11)
    fast = list(stream_tokens(model, tok, "\n", cfg, use_cache=True))
    plain = list(stream_tokens(model, tok, "\n", cfg, use_cache=False))
    if [t.id for t in fast] != [t.id for t in plain]:
        return float("inf")
    return max(float((a.probs - b.probs).abs().max()) for a, b in zip(fast, plain))


def measure(quick: bool) -> list[dict]:
    tok = CharTokenizer(["\n"] + [chr(32 + i) for i in range(64)])
    chars = 300 if quick else 1000
    repeats = 1 if quick else 5
    rows = []
    torch.set_num_threads(1)  # batch 1: one thread was fastest here (see the threads bench)
    for position in ("rope", "learned"):
        torch.manual_seed(0)
        model = GPT(ModelConfig(vocab_size=65, n_layer=4, n_head=4, n_embd=128, block_size=64,
                                position=position)).eval()
        fast, seed = alternated(model, tok, chars, repeats)
        plain = _speed(model, tok, chars, False, [0])
        gap = _max_prob_gap(model, tok, 200 if quick else 400)
        default = " (the default architecture)" if position == "learned" else ""
        lean_text, lean_details = "", {}
        if position == "learned":
            window_plain, window_lean = _window_rates(model, 200 if quick else 500, 1 if quick else 3)
            lean_text = (f"; past the block, a lean windowed forward {window_lean:,.0f} chars/s = "
                         f"{window_lean / window_plain:.2f}x the plain loop's {window_plain:,.0f}")
            lean_details = {"window_plain_chars_per_s": window_plain, "window_lean_chars_per_s": window_lean}
        rows.append({
            "name": f"generation_{position}",
            "target": f">= {RATIO:g}x the seed's loop at batch 1, exact probabilities" if position == "rope"
            else "informational: learned positions must recompute the window per character",
            "measured": f"{fast:,.0f} chars/s = {fast / seed:.1f}x the seed's loop{default}; "
                        f"max |p_fast - p_plain| = {gap:.1e}{lean_text}",
            "reference": f"the seed's loop (the cropped window through the model per character) {seed:,.0f} "
                         f"chars/s (medians of {repeats} runs each, alternated); our uncached path {plain:,.0f}; "
                         f"nanoGPT about {NANOGPT} chars/s",
            "passed": (fast >= RATIO * seed and gap <= 1e-5) if position == "rope" else None,
            "details": {"chars_per_s": fast, "seed_loop_chars_per_s": seed, "plain_chars_per_s": plain,
                        "max_prob_gap": gap,
                        "chars": chars, **lean_details},
        })
    return rows
