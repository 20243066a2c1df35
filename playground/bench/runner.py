"""`python -m playground bench`: every performance target, measured side by side, PASS/FAIL.

Training runs that need a clean memory figure run as subprocesses (the CLI, as a user runs
it); the reference implementation runs in this process, alternating with ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from playground.bench.results import ROOT, Result, _env, _median, median_step


# -- 1. same work, less time ---------------------------------------------------------------
def bench_seed(quick: bool) -> list[Result]:
    import torch

    from playground.bench.reference import train_reference
    from playground.engine.data.corpus import builtin_text
    from playground.engine.presets import PRESETS
    from playground.engine.training.prepare import prepare_run
    preset = PRESETS["seed"]
    text = builtin_text("phrase")
    cores = os.cpu_count() or 1
    ours, ref, losses, ref_losses = [], [], [], []
    for _ in range(1 if quick else 5):
        torch.set_num_threads(cores)  # the reference runs with torch's default threads
        r = train_reference(text, preset.model.n_layer, preset.model.n_head, preset.model.n_embd,
                            preset.model.block_size, preset.train.batch_size,
                            preset.train.max_steps, preset.train.learning_rate)
        ref.append(r["train_seconds"])
        ref_losses.append(r["final_loss"])
        # the same work as the reference: training steps only, no samples or evaluations
        trainer = prepare_run("phrase", text, preset.model, preset.train.replace(sample_chars=0, eval_interval=10**6))
        done = list(trainer.run())[-1]
        ours.append(done.train_seconds)
        losses.append(done.final_loss)
    from playground.bench.shakespeare import _matmul_peak
    ratio = _median(ours) / _median(ref)
    # the compute limit: the run's matmul FLOPs (6 per parameter per token) at this CPU's matmul peak
    flops = 6 * trainer.model.num_params() * preset.train.batch_size * preset.model.block_size * \
        preset.train.max_steps
    peak = _matmul_peak()
    limit_s = flops / peak
    # the goal was 1/3 when the seed text was the phrase once (7 distinct windows, merged); on the
    # phrase repeated, the run is compute-bound at about 2x
    return [Result("seed_time", ">= 2x the plain reference's speed (training steps only), loss <= 0.1",
                   f"{_median(ours):.2f} s ({1 / ratio:.2f}x), loss {max(losses):.4f}; the compute limit "
                   f"{limit_s:.2f} s ({flops / 1e12:.2f} TFLOP at {peak / 1e9:.0f} GFLOP/s): "
                   f"{limit_s / _median(ours):.0%} of it reached",
                   f"plain reference {_median(ref):.2f} s, loss {max(ref_losses):.4f}",
                   ratio <= 1 / 2 and max(losses) <= 0.1,
                   {"ours_s": ours, "reference_s": ref, "ratio": ratio, "final_losses": losses,
                    "reference_losses": ref_losses, "threads": trainer.threads, "flops": flops,
                    "matmul_peak_flops": peak, "compute_limit_s": limit_s})]


# -- 2, 3, 7. Shakespeare runs in subprocesses (bench/shakespeare.py) -----------------------
def bench_shakespeare(quick: bool) -> list[Result]:
    from playground.bench.shakespeare import shakespeare_rows
    return shakespeare_rows(quick)


def bench_gpu(quick: bool) -> list[Result]:
    from playground.bench.shakespeare import gpu_rows
    return gpu_rows(quick)


# -- 4. generation --------------------------------------------------------------------------
def bench_generation(quick: bool) -> list[Result]:
    from playground.bench.generation_speed import measure
    return [Result(**r) for r in measure(quick)]


def bench_decode(quick: bool) -> list[Result]:
    """GPT-2 small's shape decoding at batch 1 against the memory-bandwidth limit, in its own process."""
    import tempfile

    from playground.bench.decode_bandwidth import row
    with tempfile.TemporaryDirectory(prefix="playground-bench-") as tmp:
        out = Path(tmp) / "decode.json"
        proc = subprocess.run([sys.executable, "-m", "playground.bench.decode_bandwidth", "--json", str(out),
                               *(["--quick"] if quick else [])], env=_env(), capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"decode bench failed: {proc.stderr[-2000:]}")
        return [Result(**row(quick, json.loads(out.read_text())))]


def bench_tokenizers(quick: bool) -> list[Result]:
    from playground.bench.tokens import rows
    return [Result(**r) for r in rows(quick)]


def bench_finetune(quick: bool) -> list[Result]:
    from playground.bench.fine_tuning import rows
    return [Result(**r) for r in rows(quick)]


def bench_estimates(quick: bool) -> list[Result]:
    from playground.bench.estimates import rows
    return [Result(**r) for r in rows(quick, _env())]


def bench_serve(quick: bool) -> list[Result]:
    from playground.bench.serving import rows
    return [Result(**r) for r in rows(quick)]


# -- 5. the GUI does not slow training -------------------------------------------------------
def _gui_run(mode: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "playground.bench.gui", "--mode", mode, "--steps", str(steps)],
                         env={**_env(), "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"GUI bench ({mode}) failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_gui(quick: bool) -> list[Result]:
    steps = 150 if quick else 300
    headless, inside = [], []
    # alternated, each run in a fresh process: a process here sometimes runs 20-30% slower
    # than the next one (the VM's two cores are not always equally free), so five of each
    for _ in range(1 if quick else 5):
        headless.append(_gui_run("headless", steps)["tokens_per_s"])
        inside.append(_gui_run("gui", steps)["tokens_per_s"])
    probe = _gui_run("probe", steps)
    panels = _gui_run("panels", steps)["tokens_per_s"]
    # each Inside view in sight, read at every evaluation (every 50 steps), one process each
    inside_views = {kind: _gui_run(f"inside-{kind}", steps)["tokens_per_s"]
                    for kind in ("lens", "surprise", "embeddings", "induction")}
    base, rate = _median(headless), _median(inside)
    stall = probe["p99"] - 10
    return [
        Result("gui_throughput", ">= 90% of headless tokens/s (shakespeare-cpu)",
               f"{rate:,.0f} tok/s in the window = {rate / base:.0%}",
               f"headless {base:,.0f} tok/s, same config (medians of {len(inside)} runs each, "
               "alternated, fresh processes)", rate / base >= 0.9,
               {"gui": inside, "headless": headless, "pair_ratios": [g / h for g, h in zip(inside, headless)]}),
        Result("gui_panels", "informational: cost of the insight views during training",
               f"{panels:,.0f} tok/s with health, attention (refreshed each eval) and odds open "
               f"= {panels / base:.0%} of headless", f"{rate:,.0f} tok/s with them closed",
               None, {"panels": panels, "closed": rate}),
        Result("gui_inside", "informational: cost of each Inside view in sight during training",
               ", ".join(f"{kind} {v / base:.0%}" for kind, v in inside_views.items()) + " of headless",
               f"{rate:,.0f} tok/s with no view open ({rate / base:.0%}); readings at every evaluation (50 steps)",
               None, {"tokens_per_s": inside_views, "closed": rate, "headless": base}),
        Result("gui_stall", "GUI event loop stall <= 50 ms at the 99th percentile",
               f"p99 probe interval {probe['p99']:.1f} ms (stall {stall:.1f} ms), max {probe['max']:.1f} ms",
               f"10 ms probe timer, {probe['ticks']} ticks during training "
               f"({probe['tokens_per_s']:,.0f} tok/s with the probe)", stall <= 50, probe),
    ]


def bench_soak(quick: bool) -> list[Result]:
    out = subprocess.run([sys.executable, "-m", "playground.bench.gui", "--soak",
                          "5000" if quick else "20000"], env={**_env(), "QT_QPA_PLATFORM": "offscreen"},
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"soak bench failed: {out.stderr[-2000:]}")
    return [Result(**r) for r in json.loads(out.stdout.strip().splitlines()[-1])]


# -- 6. start-up -----------------------------------------------------------------------------
def bench_startup(quick: bool) -> list[Result]:
    times = []
    for _ in range(2 if quick else 5):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, str(ROOT / "main.py")], capture_output=True, text=True,
                             env={**_env(), "QT_QPA_PLATFORM": "offscreen", "PLAYGROUND_STARTUP_PROBE": "1",
                                  "PLAYGROUND_SETTINGS_FILE": os.devnull}, timeout=60)
        if "window shown" not in out.stdout:
            raise RuntimeError(f"main.py did not report its window: {out.stderr[-1000:]}")
        shown = float(out.stdout.split("window shown after")[1].split()[0])
        times.append((time.perf_counter() - t0, shown))
    wall = _median([t[0] for t in times])
    inside = _median([t[1] for t in times])
    return [Result("startup", "window on screen <= 1.5 s after `python main.py`",
                   f"{inside:.2f} s to the first paint (process wall incl. exit {wall:.2f} s)",
                   "import torch alone: 1.6-2.4 s", inside <= 1.5,
                   {"shown_s": [t[1] for t in times], "process_wall_s": [t[0] for t in times]})]


# -- 8. threads ------------------------------------------------------------------------------
def bench_threads(quick: bool) -> list[Result]:
    import torch

    from playground.engine.data.corpus import builtin_text, find_shakespeare, read_text_file
    from playground.engine.events import Step
    from playground.engine.presets import PRESETS
    from playground.engine.training.prepare import prepare_corpus, prepare_trainer
    from playground.engine.training.trainer import auto_threads
    rows, ok = {}, True
    for name, text in [("seed", builtin_text("phrase")),
                       ("shakespeare-cpu", read_text_file(find_shakespeare()))]:
        preset = PRESETS[name]
        corpus = prepare_corpus(name, text, preset.model.block_size, preset.train)
        model = preset.model.replace(vocab_size=corpus.tokenizer.vocab_size)
        runs: dict[int, list[float]] = {1: [], 2: []}
        for threads in (1, 2, 1, 2):  # interleaved: this machine's load drifts
            trainer = prepare_trainer(corpus, model, preset.train.replace(
                threads=threads, max_steps=80 if quick else 160, warmup_steps=0, sample_chars=0, eval_interval=10**6))
            elapsed = [e.elapsed_s for e in trainer.run() if isinstance(e, Step)]
            runs[threads].append(median_step(elapsed, 20) * 1000)
        timing = {t: min(v) for t, v in runs.items()}
        picked = auto_threads(model, preset.train, corpus)
        best = min(timing, key=timing.get)
        rows[name] = {"ms_per_step": timing, "auto": picked, "fastest": best}
        ok = ok and (picked == best or timing[picked] <= 1.1 * timing[best])
    torch.set_num_threads(os.cpu_count() or 1)
    text = "; ".join(f"{n}: 1 thread {r['ms_per_step'][1]:.1f} ms, 2 threads {r['ms_per_step'][2]:.1f} ms "
                     f"-> auto {r['auto']}" for n, r in rows.items())
    return [Result("threads", "auto picks the faster thread count (within 10%)", text,
                   "measured per step, after warm-up", ok, rows)]


def bench_busy(quick: bool) -> list[Result]:
    from playground.bench.busy import rows
    return [Result(**r) for r in rows(quick)]


BENCHES: dict[str, Callable[[bool], list[Result]]] = {
    "seed": bench_seed, "shakespeare": bench_shakespeare, "generation": bench_generation,
    "gui": bench_gui, "startup": bench_startup, "threads": bench_threads, "soak": bench_soak,
    "serve": bench_serve, "tokenizers": bench_tokenizers, "estimates": bench_estimates,
    "gpu": bench_gpu, "finetune": bench_finetune, "busy": bench_busy, "decode": bench_decode,
}


def run_bench(args) -> int:
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        from playground.engine.errors import ConfigError
        raise ConfigError(f"unknown bench {unknown}; choose from {', '.join(BENCHES)}")
    results: list[Result] = []
    for name in names:
        print(f"running {name}…", file=sys.stderr, flush=True)
        try:
            results += BENCHES[name](args.quick)
        except Exception as exc:  # one failing bench must not hide the others
            results.append(Result(name, "(bench failed to run)", f"{type(exc).__name__}: {exc}", "", False))
    _print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
    return 0 if all(r.passed is not False for r in results) else 1


def _print_table(results: list[Result]) -> None:
    print(f"\n{'target':<16} {'goal':<52} {'measured':<60} {'reference':<50} result")
    for r in results:
        verdict = "PASS" if r.passed else ("FAIL" if r.passed is False else "info")
        print(f"{r.name:<16} {r.target:<52} {r.measured:<60} {r.reference:<50} {verdict}")
