"""`python -m playground bench`: every performance target, measured side by side, PASS/FAIL.

Training runs that need a clean memory figure run as subprocesses (the CLI, as a user runs
it); the reference implementation runs in this process, alternating with ours.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[2]
NANOGPT_TOKENS_PER_S = 11_800   # nanoGPT, shakespeare-cpu recipe, measured on this machine (issue 4)
NANOGPT_VAL_LOSS = 1.886
NANOGPT_SECONDS = 155.0
NANOGPT_CHARS_PER_S = 220


@dataclass
class Result:
    name: str
    target: str
    measured: str
    reference: str
    passed: Optional[bool]          # None: informational
    details: dict = field(default_factory=dict)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


# -- 1. same work, less time ---------------------------------------------------------------
def bench_seed(quick: bool) -> list[Result]:
    import torch

    from playground.bench.reference import train_reference
    from playground.engine.corpus import build_corpus, builtin_text
    from playground.engine.presets import PRESETS
    from playground.engine.train import Trainer
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
        corpus = build_corpus("phrase", text, preset.train.val_fraction, preset.model.block_size)
        # the same work as the reference: training steps only, no samples or evaluations
        trainer = Trainer(preset.model, preset.train.replace(sample_chars=0, eval_interval=10**6),
                          corpus)
        done = list(trainer.run())[-1]
        ours.append(done.train_seconds)
        losses.append(done.final_loss)
    ratio = _median(ours) / _median(ref)
    return [Result("seed_time", "<= 1/3 of the plain reference (training steps only), loss <= 0.1",
                   f"{_median(ours):.2f} s (ratio {ratio:.3f}), loss {max(losses):.4f}",
                   f"plain reference {_median(ref):.2f} s, loss {max(ref_losses):.4f}",
                   ratio <= 1 / 3 and max(losses) <= 0.1,
                   {"ours_s": ours, "reference_s": ref, "ratio": ratio, "final_losses": losses,
                    "reference_losses": ref_losses, "threads": trainer.threads})]


# -- 2, 3, 7. Shakespeare runs in subprocesses ---------------------------------------------
def _train_subprocess(args: list[str], workdir: Path, label: str) -> dict:
    log = workdir / f"{label}.jsonl"
    ckpt = workdir / f"{label}.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "playground", "train", *args, "--quiet",
                             "--log-json", str(log), "--out", str(ckpt)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, _ = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} training failed: {stderr[-2000:]}")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    done = events[-1]
    steps = [e for e in events if e["event"] == "step"]
    curve = [(e["step"], e["elapsed_s"], e["val_loss"]) for e in events if e["event"] == "eval"]
    # throughput after warm-up: the median step from step 20 on, so evaluation pauses drop out
    prev = None
    rates = []
    for e in steps[20:]:
        if prev is not None:
            rates.append(e["elapsed_s"] - prev)
        prev = e["elapsed_s"]
    step_s = _median(rates) if rates else float("nan")
    tokens_per_step = done["tokens"] / max(len(steps), 1)
    # the child's own high-water mark (ru_maxrss from wait4 would include this process's,
    # which Linux carries over the child's exec)
    return {"done": done, "curve": curve, "ckpt": ckpt, "max_rss_mb": done["peak_rss_mb"],
            "tokens_per_s": tokens_per_step / step_s if rates else float("nan")}


def _full_val_loss(ckpt: Path) -> float:
    import torch

    from playground.engine import checkpoint
    from playground.engine.corpus import build_corpus, find_shakespeare, read_text_file
    from playground.engine.evaluate import full_loss
    model = checkpoint.load(ckpt, with_optimizer=False)
    corpus = build_corpus("shakespeare", read_text_file(find_shakespeare()), 0.1,
                          model.model_config.block_size, tokenizer=model.tokenizer)
    torch.set_num_threads(os.cpu_count() or 1)
    return full_loss(model.model, corpus.val_ids(), model.model_config.block_size)


def bench_shakespeare(quick: bool) -> list[Result]:
    from playground.engine.presets import PRESETS
    work = Path(tempfile.mkdtemp(prefix="playground-bench-"))
    extra = ["--steps", "300"] if quick else []
    cpu = _train_subprocess(["--preset", "shakespeare-cpu", *extra], work, "shakespeare-cpu")
    fast = _train_subprocess(["--preset", "shakespeare-fast", *extra], work, "shakespeare-fast")
    cpu_val, fast_val = _full_val_loss(cpu["ckpt"]), _full_val_loss(fast["ckpt"])
    fast_s = fast["done"]["train_seconds"]
    results = [
        Result("time_to_quality", "shakespeare-fast: val loss <= 1.88 in <= 40 s of training",
               f"{fast_val:.4f} in {fast_s:.1f} s",
               f"shakespeare-cpu here: {cpu_val:.4f} in {cpu['done']['train_seconds']:.1f} s; "
               f"nanoGPT {NANOGPT_VAL_LOSS} in {NANOGPT_SECONDS:.0f} s",
               fast_val <= 1.88 and fast_s <= 40 and not quick,
               {"fast_curve": fast["curve"], "cpu_curve": cpu["curve"],
                "fast_val_full_tail": fast_val, "cpu_val_full_tail": cpu_val,
                "fast_val_logged": fast["done"]["final_val_loss"],
                "cpu_val_logged": cpu["done"]["final_val_loss"],
                "fast_preset": {"model": PRESETS["shakespeare-fast"].model.to_dict(),
                                "train": PRESETS["shakespeare-fast"].train.to_dict()}}),
    ]
    peak = _matmul_peak()
    tps = cpu["tokens_per_s"]
    flops_per_token = 6 * cpu["done"]["params"]
    results.append(Result("throughput", ">= 1.3x nanoGPT's tokens/s on shakespeare-cpu",
                          f"{tps:,.0f} tok/s ({tps / NANOGPT_TOKENS_PER_S:.2f}x), "
                          f"{tps * flops_per_token / 1e9:.1f} GFLOP/s = "
                          f"{tps * flops_per_token / peak:.0%} of matmul peak",
                          f"nanoGPT {NANOGPT_TOKENS_PER_S:,} tok/s; matmul peak {peak / 1e9:.0f} GFLOP/s",
                          tps >= 1.3 * NANOGPT_TOKENS_PER_S, {"tokens_per_s": tps, "peak_flops": peak}))
    results.append(Result("memory", "peak RSS of shakespeare-cpu training <= 400 MB",
                          f"{cpu['max_rss_mb']:.0f} MB", "nanoGPT 376 MB",
                          cpu["max_rss_mb"] <= 400, {"max_rss_mb": cpu["max_rss_mb"],
                                                     "fast_max_rss_mb": fast["max_rss_mb"]}))
    _print_curves(cpu["curve"], fast["curve"])
    return results


def _print_curves(cpu: list, fast: list) -> None:
    print("\nvalidation loss against training time (s):", file=sys.stderr)
    print(f"{'shakespeare-cpu':>34} | {'shakespeare-fast':>34}", file=sys.stderr)
    for i in range(max(len(cpu), len(fast))):
        a = f"step {cpu[i][0]:>5} {cpu[i][1]:>7.1f} s {cpu[i][2]:.4f}" if i < len(cpu) else ""
        b = f"step {fast[i][0]:>5} {fast[i][1]:>7.1f} s {fast[i][2]:.4f}" if i < len(fast) else ""
        print(f"{a:>34} | {b:>34}", file=sys.stderr)


def _matmul_peak() -> float:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 1024**3 / min(times)


# -- 4. generation --------------------------------------------------------------------------
def bench_generation(quick: bool) -> list[Result]:
    from playground.bench.generation import measure
    return [Result(**r) for r in measure(quick)]


def bench_tokenizers(quick: bool) -> list[Result]:
    from playground.bench.tokens import rows
    return [Result(**r) for r in rows(quick)]


def bench_serve(quick: bool) -> list[Result]:
    from playground.bench.serve import rows
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

    from playground.engine.corpus import build_corpus, builtin_text, find_shakespeare, read_text_file
    from playground.engine.events import Step
    from playground.engine.presets import PRESETS
    from playground.engine.train import Trainer, auto_threads
    rows, ok = {}, True
    for name, text in [("seed", builtin_text("phrase")),
                       ("shakespeare-cpu", read_text_file(find_shakespeare()))]:
        preset = PRESETS[name]
        corpus = build_corpus(name, text, 0.1, preset.model.block_size)
        model = preset.model.replace(vocab_size=corpus.tokenizer.vocab_size)
        runs: dict[int, list[float]] = {1: [], 2: []}
        for threads in (1, 2, 1, 2):  # interleaved: this machine's load drifts
            trainer = Trainer(model, preset.train.replace(threads=threads, max_steps=80 if quick else 160,
                                                          sample_chars=0, eval_interval=10**6), corpus)
            steps = [e for e in trainer.run() if isinstance(e, Step)]
            gaps = [b.elapsed_s - a.elapsed_s for a, b in zip(steps[20:], steps[21:])]
            runs[threads].append(statistics.median(gaps) * 1000)
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


BENCHES: dict[str, Callable[[bool], list[Result]]] = {
    "seed": bench_seed, "shakespeare": bench_shakespeare, "generation": bench_generation,
    "gui": bench_gui, "startup": bench_startup, "threads": bench_threads, "soak": bench_soak,
    "serve": bench_serve, "tokenizers": bench_tokenizers,
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
