"""The Tiny Shakespeare rows: time to quality against nanoGPT's recipe (restated in
nanogpt.py and timed in the same run), the two-minute preset, throughput, memory, the GPU row,
and the PNG of their validation curves. Training runs as subprocesses (the CLI, as a user runs
it), so each memory figure is its own process's.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from playground.bench.results import Result, _env, _median, median_step

NANOGPT_TOKENS_PER_S = 11_800   # nanoGPT itself, its CPU recipe, as measured for issue 4 (older torch)
FAST_GOAL, TWO_MIN_GOAL = 1.88, 1.55   # issue 15's goals, validation nats per character
GPU_GOAL = 1.47
FIVE_MIN_GOAL = 1.47   # nanoGPT's best with its GPU recipe (1.469), on this CPU in 5 minutes


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
    # validation in nats per character (a BPE model's loss per token is not comparable)
    curve = [(e["step"], e["elapsed_s"], e["val_bpc"] * math.log(2) if e.get("val_bpc") else e["val_loss"])
             for e in events if e["event"] == "eval"]
    # throughput after warm-up: the median step from step 20 on
    step_s = median_step([e["elapsed_s"] for e in steps], 20)
    tokens_per_step = done["tokens"] / max(len(steps), 1)
    # the child's own high-water mark (ru_maxrss from wait4 would include this process's,
    # which Linux carries over the child's exec)
    return {"done": done, "curve": curve, "ckpt": ckpt, "max_rss_mb": done["peak_rss_mb"],
            "tokens_per_s": tokens_per_step / step_s}


def _full_val_loss(ckpt: Path) -> float:
    import torch

    from playground.engine.analysis.evaluation import full_loss
    from playground.engine.data.corpus import build_corpus, find_shakespeare, read_text_file
    from playground.engine.model import checkpoint
    model = checkpoint.load(ckpt, with_optimizer=False)
    corpus = build_corpus("shakespeare", read_text_file(find_shakespeare()), 0.1,
                          model.model_config.block_size, tokenizer=model.tokenizer)
    torch.set_num_threads(os.cpu_count() or 1)
    # nats per character, so a BPE model is judged on the same scale as a character model
    return full_loss(model.model, corpus.val_ids(), model.model_config.block_size) / \
        corpus.chars_per_token("val")


def _nanogpt_subprocess(recipe: str, workdir: Path, steps: Optional[int] = None,
                        device: str = "cpu") -> dict:
    """nanoGPT's recipe (restated in bench/nanogpt.py), timed in this run like ours."""
    out = workdir / f"nanogpt-{recipe}.json"
    extra = ["--steps", str(steps)] if steps else []
    proc = subprocess.run([sys.executable, "-m", "playground.bench.nanogpt", "--recipe", recipe,
                           "--device", device, "--json", str(out), *extra],
                          env=_env(), capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"nanoGPT {recipe} recipe failed: {proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def shakespeare_rows(quick: bool) -> list[Result]:
    from playground.bench.nanogpt import time_or_bound
    work = Path(tempfile.mkdtemp(prefix="playground-bench-"))
    extra = ["--steps", "300"] if quick else []
    nano = _nanogpt_subprocess("cpu", work, 300 if quick else None)
    cpu = _train_subprocess(["--preset", "shakespeare-cpu", *extra], work, "shakespeare-cpu")
    fast = _train_subprocess(["--preset", "shakespeare-fast"], work, "shakespeare-fast")
    two = _train_subprocess(["--preset", "shakespeare-2min", *(["--steps", "100"] if quick else [])],
                            work, "shakespeare-2min")
    five = _train_subprocess(["--preset", "shakespeare-5min", *(["--steps", "100"] if quick else [])],
                             work, "shakespeare-5min")
    cpu_val, fast_val, two_val, five_val = (_full_val_loss(r["ckpt"]) for r in (cpu, fast, two, five))
    fast_s, two_s = fast["done"]["train_seconds"], two["done"]["train_seconds"]
    nano_s, reached = time_or_bound(nano["evals"], FAST_GOAL, nano["train_seconds"])
    nano_best = min(e["val_full"] for e in nano["evals"])
    nano_text = (f"nanoGPT's CPU recipe (restated, same run): {FAST_GOAL} after {nano_s:.1f} s" if reached
                 else f"nanoGPT's CPU recipe (restated, same run) never reached {FAST_GOAL} in its "
                 f"{nano_s:.1f} s (best {nano_best:.4f}): it needs more")
    share = fast_s / nano_s  # when nanoGPT never got there, at most this share
    shown = f" = 1/{1 / share:.1f} of nanoGPT's" if reached else f" < 1/{1 / share:.1f} of nanoGPT's"
    results = [
        Result("time_to_quality", f"shakespeare-fast: val loss <= {FAST_GOAL} in <= 1/5 of nanoGPT's time",
               f"{fast_val:.4f} in {fast_s:.1f} s{shown}",
               nano_text + f"; shakespeare-cpu here: {cpu_val:.4f} in {cpu['done']['train_seconds']:.1f} s",
               fast_val <= FAST_GOAL and share <= 1 / 5 and not quick,
               {"fast_s": fast_s, "fast_val_full": fast_val, "nanogpt_s_to_goal": nano_s,
                "nanogpt_reached_goal": reached,
                "nanogpt_evals": nano["evals"], "nanogpt_tokens_per_s": nano["tokens_per_s"],
                "fast_curve": fast["curve"], "cpu_curve": cpu["curve"], "cpu_val_full": cpu_val,
                "fast_preset": _preset_dict("shakespeare-fast")}),
        Result("two_minutes", f"shakespeare-2min: val loss <= {TWO_MIN_GOAL} in <= 120 s of training",
               f"{two_val:.4f} in {two_s:.1f} s",
               f"nanoGPT's CPU recipe: best {nano_best:.4f} in {nano['train_seconds']:.0f} s",
               two_val <= TWO_MIN_GOAL and two_s <= 120 and not quick,
               {"val_full": two_val, "seconds": two_s, "curve": two["curve"],
                "preset": _preset_dict("shakespeare-2min")}),
        Result("five_minutes", f"shakespeare-5min: val loss <= {FIVE_MIN_GOAL} in <= 300 s of training "
               "(nanoGPT's GPU result)",
               f"{five_val:.4f} in {five['done']['train_seconds']:.1f} s",
               "nanoGPT's GPU recipe (10.7M parameters, 2,000 steps on an H100): best 1.469; its CPU recipe "
               f"here: best {nano_best:.4f}",
               five_val <= FIVE_MIN_GOAL and five["done"]["train_seconds"] <= 300 and not quick,
               {"val_full": five_val, "seconds": five["done"]["train_seconds"], "curve": five["curve"],
                "preset": _preset_dict("shakespeare-5min")}),
    ]
    peak = _matmul_peak()
    ours_s, nano_s_step = _alternated_steps(quick)
    tokens = 12 * 64  # a step of shakespeare-cpu and of nanoGPT's CPU recipe (batch 12, block 64)
    tps, nano_tps = tokens / _median(ours_s), tokens / _median(nano_s_step)
    flops_per_token = 6 * cpu["done"]["params"]
    results.append(Result("throughput", ">= 1.3x nanoGPT's tokens/s on shakespeare-cpu (side by side)",
                          f"{tps:,.0f} tok/s ({tps / nano_tps:.2f}x), "
                          f"{tps * flops_per_token / 1e9:.1f} GFLOP/s = "
                          f"{tps * flops_per_token / peak:.0%} of matmul peak",
                          f"nanoGPT's recipe restated: {nano_tps:,.0f} tok/s (median steps, "
                          f"{len(ours_s)} alternated runs each in one process; the whole subprocess runs "
                          f"read ours {cpu['tokens_per_s']:,.0f}, nanoGPT's {nano['tokens_per_s']:,.0f}; "
                          f"{NANOGPT_TOKENS_PER_S:,} when nanoGPT itself was measured for issue 4, "
                          f"older torch); matmul peak {peak / 1e9:.0f} GFLOP/s",
                          tps >= 1.3 * nano_tps,
                          {"tokens_per_s": tps, "nanogpt_tokens_per_s": nano_tps, "ours_step_s": ours_s,
                           "nanogpt_step_s": nano_s_step, "peak_flops": peak, "tokens_per_step": tokens}))
    results.append(Result("memory", "peak RSS of shakespeare-cpu training <= 400 MB",
                          f"{cpu['max_rss_mb']:.0f} MB", "nanoGPT 376 MB",
                          cpu["max_rss_mb"] <= 400, {"max_rss_mb": cpu["max_rss_mb"],
                                                     "fast_max_rss_mb": fast["max_rss_mb"]}))
    curves = {"nanoGPT CPU recipe (4x128, AdamW)": [(e["seconds"], e["val_full"]) for e in nano["evals"]],
              "shakespeare-cpu (same recipe, ours)": [(c[1], c[2]) for c in cpu["curve"]],
              "shakespeare-fast": [(c[1], c[2]) for c in fast["curve"]],
              "shakespeare-2min": [(c[1], c[2]) for c in two["curve"]],
              "shakespeare-5min": [(c[1], c[2]) for c in five["curve"]]}
    results[0].details["png"] = _draw_curves(curves, work)
    _print_curves(curves)
    return results


def gpu_rows(quick: bool) -> list[Result]:
    """shakespeare-gpu against nanoGPT's GPU recipe (compiled) on the same GPU, in one run."""
    import torch

    from playground.bench.nanogpt import time_to
    goal = "shakespeare-gpu: val loss <= 1.47 in <= 1/3 of nanoGPT's time on the same GPU"
    if not torch.cuda.is_available():
        return [Result("gpu_time_to_quality", goal, "not measured: no CUDA GPU on this machine",
                       "", None)]
    work = Path(tempfile.mkdtemp(prefix="playground-bench-gpu-"))
    t0 = time.perf_counter()
    nano = _nanogpt_subprocess("gpu", work, 300 if quick else None, device="cuda")
    nano_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = _train_subprocess(["--preset", "shakespeare-gpu", "--device", "cuda",
                              *(["--steps", "300"] if quick else [])], work, "shakespeare-gpu")
    ours_wall = time.perf_counter() - t0
    curve = [{"seconds": t, "val": v} for _, t, v in ours["curve"]]
    ours_s, nano_s = time_to(curve, GPU_GOAL, "val"), time_to(nano["evals"], GPU_GOAL)
    share = ours_s / nano_s if ours_s and nano_s else None
    return [Result("gpu_time_to_quality", goal,
                   f"{GPU_GOAL} after {ours_s:.1f} s of training" if ours_s else
                   f"never reached {GPU_GOAL} (best {min(v for _, _, v in ours['curve']):.4f})",
                   (f"nanoGPT (compiled, {nano['compile_seconds']:.0f} s of compilation not counted): "
                    + (f"{nano_s:.1f} s" if nano_s else "never") +
                    f"; whole processes: ours {ours_wall:.0f} s, nanoGPT {nano_wall:.0f} s"),
                   share is not None and share <= 1 / 3 and not quick,
                   {"ours_curve": ours["curve"], "nanogpt_evals": nano["evals"], "share": share,
                    "ours_wall_s": ours_wall, "nanogpt_wall_s": nano_wall,
                    "device": torch.cuda.get_device_name(0)})]


def _alternated_steps(quick: bool) -> tuple[list[float], list[float]]:
    """Median step seconds of shakespeare-cpu (ours, the CLI's default path) and of nanoGPT's
    CPU recipe, alternated in this process (150 steps each, 3 times; 1 when quick)."""
    import torch

    from playground.bench.nanogpt import RECIPES, step_seconds
    from playground.engine.data.corpus import find_shakespeare, read_text_file
    from playground.engine.events import Step
    from playground.engine.presets import PRESETS
    from playground.engine.training.prepare import prepare_corpus, prepare_trainer
    torch.set_num_threads(os.cpu_count() or 1)
    preset = PRESETS["shakespeare-cpu"]
    corpus = prepare_corpus("shakespeare", read_text_file(find_shakespeare()), preset.model.block_size, preset.train)
    ours, theirs = [], []
    for _ in range(1 if quick else 3):
        theirs.append(step_seconds(RECIPES["cpu"], corpus.train_ids(), corpus.tokenizer.vocab_size, 150))
        trainer = prepare_trainer(corpus, preset.model, preset.train.replace(max_steps=150, eval_interval=10**6,
                                                                             sample_chars=0))
        ours.append(median_step([e.elapsed_s for e in trainer.run() if isinstance(e, Step)], 10))
    return ours, theirs


def _preset_dict(name: str) -> dict:
    from playground.engine.presets import PRESETS
    return {"model": PRESETS[name].model.to_dict(), "train": PRESETS[name].train.to_dict()}


def _draw_curves(curves: dict, work: Path) -> str:
    """The validation curves in one PNG (a subprocess: the bench itself never loads Qt)."""
    data = work / "curves.json"
    out = Path(os.environ.get("PLAYGROUND_BENCH_PNG", work / "shakespeare-curves.png"))
    data.write_text(json.dumps({"title": "Tiny Shakespeare on this CPU: validation loss against time",
                                "goals": [FAST_GOAL, TWO_MIN_GOAL, FIVE_MIN_GOAL], "runs": curves}))
    proc = subprocess.run([sys.executable, "-m", "playground.bench.curves", str(data), str(out)],
                          env={**_env(), "QT_QPA_PLATFORM": "offscreen"}, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        return f"(not drawn: {proc.stderr[-300:]})"
    print(f"curves drawn in {out}", file=sys.stderr)
    return str(out)


def _print_curves(curves: dict) -> None:
    print("\nvalidation loss against training time:", file=sys.stderr)
    for label, points in curves.items():
        print(f"  {label}: " + ", ".join(f"{t:.1f} s {v:.3f}" for t, v in points), file=sys.stderr)


def _matmul_peak() -> float:
    import torch

    from playground.engine.training.estimate import measure_matmul_peak
    torch.set_num_threads(os.cpu_count() or 1)
    return measure_matmul_peak(10)
