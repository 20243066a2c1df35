"""Batch-1 decoding of a model of GPT-2 small's shape (124M parameters, random weights) against
its limit: every weight is read once per token, so tokens/s can be at most this machine's
memory bandwidth over the bytes a token reads. The bandwidth is measured in the same process
(the fastest of several streaming reads of a 1 GiB buffer, by a sum and by a matrix-vector
product), beside transformers' `generate` (KV cache) on the same weights and our 8-bit option
(`generate --int8`).

Runs in its own process: `python -m playground.bench.decode_bandwidth --json OUT [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def read_bandwidth(threads: int, gib: float = 1.0, repeats: int = 7) -> tuple[float, dict[str, float]]:
    """Bytes per second of the fastest full read of a `gib` GiB float32 buffer, with `threads`
    threads, by either of two kernels that read it once and write next to nothing: a sum, and a
    matrix-vector product of it as rows of 4,096 (MKL's); and each kernel's own rate. The faster
    one sets the limit: on the 2-core Xeon of 2026-12-05 the product streamed 30 GB/s where the
    sum read 24.5 (its arithmetic held it: one thread read half as much), and a limit our own
    step beat would be no limit."""
    rates = read_rates(threads, gib, repeats)
    return max(rates.values()), rates


def read_rates(threads: int, gib: float = 1.0, repeats: int = 7) -> dict[str, float]:
    """read_bandwidth's two kernels, each its fastest of `repeats` reads, bytes per second."""
    import torch
    torch.set_num_threads(threads)
    x = torch.ones(int(gib * 2**30) // (4 * 4096) * 4096)  # whole rows of 4,096
    x.sum()  # pages in
    rows, ones = x.view(-1, 4096), torch.ones(4096)
    out = torch.empty(rows.size(0))
    rates = {}
    for name, read in (("sum", lambda: x.sum()), ("matrix-vector", lambda: torch.mv(rows, ones, out=out))):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            read()
            best = min(best, time.perf_counter() - t0)
        rates[name] = x.numel() * 4 / best
    return rates


def step_bytes(model, int8: bool) -> int:
    """What one cached step reads of the weights: every linear (the head's full matrix, the
    tied embedding included), the layer norms, one row of each embedding table."""
    import torch
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weights = sum(m.weight.numel() for m in linear) * (1 if int8 else 4)
    small = sum(m.bias.numel() for m in linear if m.bias is not None) * 4
    small += sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.LayerNorm)
                 for p in m.parameters()) * 4
    return weights + small + 2 * model.config.n_embd * 4


def measure(quick: bool) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from playground.bench.fine_tuning import build_gpt2
    from playground.engine.config import SampleConfig
    from playground.engine.model import checkpoint
    from playground.engine.model.generation import stream_tokens
    tokens = 32 if quick else 128
    with tempfile.TemporaryDirectory(prefix="playground-decode-") as folder:
        build_gpt2(folder, quick)  # random weights of GPT-2 small's shape (quick: 2 x 256)
        ckpt = checkpoint.load(folder)
        theirs = AutoModelForCausalLM.from_pretrained(folder).eval()
    model, tok = ckpt.model.eval().requires_grad_(False), ckpt.tokenizer  # frozen, as `generate` loads it
    prompt = "ROMEO:"
    ids = torch.tensor([tok.encode(prompt)])
    config = SampleConfig(max_new_tokens=tokens, max_new_chars=1_000_000, temperature=1.0, seed=3)

    def ours(weights: str, threads: int) -> float:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        n = sum(1 for _ in stream_tokens(model, tok, prompt, config, weights=weights))
        return n / (time.perf_counter() - t0)

    def transformers_generate(threads: int) -> float:
        torch.set_num_threads(threads)
        with torch.no_grad():
            t0 = time.perf_counter()
            theirs.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, pad_token_id=0)
        return tokens / (time.perf_counter() - t0)

    runs = {"float32 1 thread": lambda: ours("float32", 1), "float32 2 threads": lambda: ours("float32", 2),
            "int8 1 thread": lambda: ours("int8", 1), "int8 2 threads": lambda: ours("int8", 2),
            "transformers 2 threads": lambda: transformers_generate(2)}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    bandwidth, kernels = [], []
    for f in runs.values():  # warm-up: first calls pay for allocations (and, past TRANSPOSED_WIDTH,
        f()                  # the step's kept copies) and packing
    for _ in range(1 if quick else 3):  # alternated: this machine's speed drifts
        fastest, each = read_bandwidth(2)
        bandwidth.append(fastest)
        kernels.append({k: v / 1e9 for k, v in each.items()})
        for name, f in runs.items():
            rates[name].append(f())
    bw = max(bandwidth)
    rate = {k: statistics.median(v) for k, v in rates.items()}
    return {"params": model.num_params(), "tokens": tokens, "bandwidth_gb_s": bw / 1e9,
            "bandwidth_runs_gb_s": [b / 1e9 for b in bandwidth], "read_kernels_gb_s": kernels,
            "bytes_float32": step_bytes(model, False), "bytes_int8": step_bytes(model, True),
            "limit_float32": bw / step_bytes(model, False), "limit_int8": bw / step_bytes(model, True),
            "tokens_per_s": rate, "runs": rates, "int8_gap": _int8_gap(model, tok.encode(prompt), 64)}


def _int8_gap(model, ids: list[int], steps: int) -> dict:
    """The 8-bit step against float32 along the same (float32-greedy) tokens: the largest
    log-probability gap and how often the greedy choices agree."""
    import torch

    from playground.engine.model.decoding import CachedRows, forward_logits, new_cache
    rows = {}
    for weights in ("float32", "int8"):
        cache = new_cache(model)
        first = forward_logits(model, ids, cache)
        r = CachedRows(model, 1, weights)
        r.add(cache)
        rows[weights] = r
    token = int(first.argmax())
    gap, agree = 0.0, 0
    for _ in range(steps):
        a, b = (torch.log_softmax(rows[w].step([token])[0], -1) for w in ("float32", "int8"))
        gap, agree = max(gap, (a - b).abs().max().item()), agree + int(a.argmax() == b.argmax())
        token = int(a.argmax())
    return {"max_abs_log_prob": gap, "greedy_agree": agree, "steps": steps}


def row(quick: bool, m: dict) -> dict:
    r = m["tokens_per_s"]
    best32 = max(r["float32 1 thread"], r["float32 2 threads"])
    best8 = max(r["int8 1 thread"], r["int8 2 threads"])
    share = best32 / m["limit_float32"]
    return {"name": "decode_gpt2", "target": ">= 80% of the memory-bandwidth limit, batch 1, float32 (GPT-2 small's shape)",
            "measured": (f"{best32:.1f} tok/s = {share:.0%} of {m['limit_float32']:.1f} "
                         f"({m['bandwidth_gb_s']:.1f} GB/s over {m['bytes_float32'] / 1e6:.0f} MB a token; "
                         f"reads of 1 GiB: sum {max(k['sum'] for k in m['read_kernels_gb_s']):.1f} GB/s, "
                         f"matrix-vector {max(k['matrix-vector'] for k in m['read_kernels_gb_s']):.1f}; "
                         f"1 thread {r['float32 1 thread']:.1f}, 2 threads {r['float32 2 threads']:.1f}); "
                         f"--int8 {best8:.1f} tok/s = {best8 / best32:.2f}x float32, "
                         f"{best8 / m['limit_int8']:.0%} of its own limit {m['limit_int8']:.1f} "
                         f"({m['bytes_int8'] / 1e6:.0f} MB a token), max |d log p| "
                         f"{m['int8_gap']['max_abs_log_prob']:.3f}, greedy agrees "
                         f"{m['int8_gap']['greedy_agree']}/{m['int8_gap']['steps']}"),
            "reference": (f"transformers' generate (KV cache, same weights, 2 threads): "
                          f"{r['transformers 2 threads']:.1f} tok/s; {m['params']:,} parameters, "
                          f"{m['tokens']} tokens a run, medians of alternated runs" + (" (quick: 2 x 256)" if quick else "")),
            "passed": share >= 0.8 and not quick, "details": m}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="batch-1 decoding against the memory-bandwidth limit")
    parser.add_argument("--json", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    Path(args.json).write_text(json.dumps(measure(args.quick)))


if __name__ == "__main__":
    main()
