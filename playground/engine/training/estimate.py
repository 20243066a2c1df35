"""What a run will cost before it starts: seconds per step, the whole run, and memory.

The window shows these beside the settings; `python -m playground bench --only estimates`
trains every preset and compares. The constants were measured on the bench machines (2 cores, no
GPU). A machine's matmul speed is measured once per process (`calibrate`: the window does it
when torch has loaded, about a tenth of a second) and the matmul rate scales with it; without
it, the rate fitted on the first bench machine stands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.model.param_count import count_params
from playground.engine.training.threads import MAX_THREADS
from playground.engine.wording import duration, size

MATMUL_FLOPS = 110e9       # sustained float32 matmul rate on training-size matrices (fitted)
# A training step's matmuls sustain about this share of the machine's 1024-square float32 matmul
# peak (`calibrate`), fitted to `bench --only estimates` on 2026-12-05 (an Intel Xeon, peak 358
# GFLOP/s) and within 17% of that day's AMD EPYC runs (peak 412); narrower models' matmuls
# reach less of it, width / FULL_WIDTH down to 64 wide (the seed, induction: a third less).
MATMUL_SHARE = 0.46
FULL_WIDTH = 96
_peak: Optional[float] = None  # this machine's measured peak, FLOP/s (None: MATMUL_FLOPS stands)
STEP_OVERHEAD_S = 0.5e-3   # fixed per-step cost: batch, clipping, optimizer launch
# per layer per step: dispatch and small element-wise operations, which dominate tiny models
LAYER_OVERHEAD_S = 1.0e-3
SAMPLE_CHAR_S = 0.25e-3    # per layer per generated character, besides its arithmetic
START_S = 0.2              # a run's first steps: thread pools, first allocations
# Fitted to the runs of `bench --only estimates` (2026-12-04): every CPU preset's run time
# within 13% of the median of five measurements, memory within 14%. A run first pages in torch's
# kernels, thread pools and allocator caches (~92 MB, the tiny preset's whole growth), and the
# backward pass keeps ~1.75x the main activations counted below.
RUNTIME_BYTES = 92 * 2**20
ACTIVATION_FACTOR = 1.75
# dropout, per element masked, forward and backward: the random masks, and attention leaving its
# fused kernel for the explicit one (shakespeare-5min, 6.6M masked elements a step: 159 against
# 105 ms a step without dropout on 2026-12-05, 12e-9 scaled to the 2026-12-04 fit above; the
# cheaper masks of gpt.dropout then took the extra from 57 to 22 ms, measured side by side)
DROPOUT_S_PER_ELEMENT = 4.6e-9


@dataclass(frozen=True)
class Estimate:
    step_s: float          # one training step
    eval_s: float          # one evaluation (both splits) and its sample
    run_s: float           # every step and evaluation of the run
    memory_bytes: float    # weights, gradients, optimizer state and activations

    def describe(self, steps: int) -> str:
        run = duration(self.run_s)
        return (f"about {size(self.memory_bytes)} of memory, ~{self.step_s * 1000:.0f} ms per step, "
                f"{run if run.startswith('under') else '~' + run} for {steps:,} steps")


def measure_matmul_peak(repeats: int = 8) -> float:
    """This machine's float32 matmul rate, FLOP/s: the fastest of `repeats` 1024-square
    products at torch's current thread count (~0.1 s; imports torch)."""
    import torch
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024 ** 3 / best


def calibrate(peak: Optional[float] = None) -> float:
    """Estimates from now on scale with this machine's matmul peak: `peak` (FLOP/s), or
    measured when not given, at the threads training uses (a count over MAX_THREADS scaled down
    in proportion). Returns it."""
    global _peak
    if peak is None:
        import torch
        peak = measure_matmul_peak() * min(1.0, MAX_THREADS / torch.get_num_threads())
    _peak = peak
    return _peak


def forget_calibration() -> None:
    """Back to the fitted rate (tests)."""
    global _peak
    _peak = None


def matmul_rate(width: int) -> float:
    """The matmul FLOP/s a training step of a model this wide sustains here."""
    if _peak is None:
        return MATMUL_FLOPS
    return MATMUL_SHARE * _peak * min(1.0, max(width, 64) / FULL_WIDTH)


def rows_per_step(batch: int, windows: int, dropout: float) -> float:
    """Rows a step computes: repeated windows are merged (corpus.get_weighted_batch) when
    there is no dropout and at most 3/4 of the batch is distinct."""
    if dropout > 0 or windows <= 0:
        return batch
    expected = windows * (1 - (1 - 1 / windows) ** batch)  # distinct among batch draws
    return expected if expected <= 0.75 * batch else batch


def muon_flops(model: ModelConfig) -> float:
    """Newton-Schulz (5 quintic iterations) on each block matrix, every step."""
    C, total = model.n_embd, 0.0
    for m, n in ((C, 3 * C), (C, C), (C, 4 * C), (C, 4 * C)):
        m, n = min(m, n), max(m, n)
        total += 5 * (4 * m * m * n + 2 * m ** 3)
    return model.n_layer * total


def estimate(model: ModelConfig, train: TrainConfig, windows: int) -> Estimate:
    """The cost of training `model` with `train` on a text holding `windows` distinct windows."""
    n = count_params(model)
    B, T, C, L = train.batch_size, model.block_size, model.n_embd, model.n_layer
    rows = rows_per_step(B, windows, model.dropout)
    rate = matmul_rate(C)
    flops = 6 * n * rows * T + 12 * L * rows * T * T * C
    if train.optimizer == "muon":
        flops += muon_flops(model)
    step_s = flops / rate + STEP_OVERHEAD_S + L * LAYER_OVERHEAD_S
    if model.dropout > 0:  # masks on the attention probabilities and on the residual stream
        attention = L * model.n_head * T if model.attention_dropout else 0
        step_s += DROPOUT_S_PER_ELEMENT * B * T * (attention + (2 * L + 1) * C)
    # an evaluation: eval_batches forward passes on each split (a third of a step's work
    # each), then sample_chars characters, each a forward over at most the block
    forward_s = (2 * n * rows * T + 4 * L * rows * T * T * C) / rate + L * 0.1e-3
    # a sample: learned positions recompute the window for every character past the block,
    # the rotary cache computes one row
    rows_per_char = 1 if model.position == "rope" else min(T, train.sample_chars)
    sample_s = train.sample_chars * (2 * n * rows_per_char / rate + L * SAMPLE_CHAR_S)
    eval_s = 2 * train.eval_batches * forward_s + sample_s
    evals = train.max_steps // train.eval_interval + (train.max_steps % train.eval_interval > 0)
    # weights, gradients and two AdamW moments, activations kept for the backward pass, and
    # the logits with their gradient
    activations = 4 * B * T * L * (16 * C + 2 * model.n_head * T)
    memory = RUNTIME_BYTES + 16 * n + ACTIVATION_FACTOR * activations + 4 * B * T * 2 * model.vocab_size
    return Estimate(step_s, eval_s, START_S + step_s * train.max_steps + eval_s * evals, memory)
