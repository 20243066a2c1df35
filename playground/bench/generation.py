"""Generation speed at batch 1 for the 4x128, block 64 model, and proof that the fast path
gives exactly the plain path's probabilities."""

from __future__ import annotations

import time

import torch

from playground.engine.config import ModelConfig, SampleConfig
from playground.engine.model import GPT
from playground.engine.sample import stream_tokens
from playground.engine.tokenizer import CharTokenizer

TARGET = 1500
NANOGPT = 220


def _speed(model: GPT, tok: CharTokenizer, chars: int, use_cache: bool, repeats: int) -> float:
    rates = []
    for seed in range(repeats):
        cfg = SampleConfig(max_new_chars=chars, temperature=1.0, seed=seed)
        t0 = time.perf_counter()
        n = sum(1 for _ in stream_tokens(model, tok, "\n", cfg, use_cache=use_cache))
        rates.append(n / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


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
    repeats = 1 if quick else 3
    rows = []
    torch.set_num_threads(1)  # batch 1: one thread was fastest here (see the threads bench)
    for position in ("rope", "learned"):
        torch.manual_seed(0)
        model = GPT(ModelConfig(vocab_size=65, n_layer=4, n_head=4, n_embd=128, block_size=64,
                                position=position)).eval()
        fast = _speed(model, tok, chars, True, repeats)
        plain = _speed(model, tok, chars, False, 1)
        gap = _max_prob_gap(model, tok, 200 if quick else 400)
        default = " (the default architecture)" if position == "learned" else ""
        rows.append({
            "name": f"generation_{position}",
            "target": f">= {TARGET:,} chars/s at batch 1, exact probabilities" if position == "rope"
            else "informational: learned positions must recompute the window per character",
            "measured": f"{fast:,.0f} chars/s{default}; max |p_fast - p_plain| = {gap:.1e}",
            "reference": f"plain path {plain:,.0f} chars/s; nanoGPT about {NANOGPT} chars/s",
            "passed": (fast >= TARGET and gap <= 1e-5) if position == "rope" else None,
            "details": {"chars_per_s": fast, "plain_chars_per_s": plain, "max_prob_gap": gap,
                        "chars": chars},
        })
    return rows
