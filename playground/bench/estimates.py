"""The window's time and memory estimates against measured runs of every preset.

Each preset trains in its own process (`python -m playground.bench.estimates --preset NAME`),
as the window would train it: whole runs, evaluations and samples included. Measured memory is
the growth of the process's peak resident set from just before the trainer is built to the
end of the run (the app and torch are already in memory when a user clicks Train).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys

GOAL = 0.30   # within 30% of the measured figure


def corpus_text(name: str) -> str:
    from playground.engine.data.corpus import resolve_source
    return resolve_source(builtin=name, allow_download=False)[1]


def measure(preset_name: str, steps: int = 0) -> dict:
    """Train the preset (or its first `steps` steps, evaluations kept in proportion)."""
    from playground.bench.results import median_step
    from playground.engine.events import Done, Step, proc_status_mb
    from playground.engine.presets import PRESETS
    from playground.engine.training.prepare import prepare_corpus, prepare_trainer

    # the trainer's module and torch are in memory when a user clicks Train: load them before
    # the mark (prepare_trainer imports them lazily, which would count torch's pages as the run's)
    from playground.engine.training.trainer import Trainer  # noqa: F401
    preset = PRESETS[preset_name]
    train = preset.train.replace(max_steps=steps) if steps else preset.train
    corpus = prepare_corpus(preset.corpus, corpus_text(preset.corpus), preset.model.block_size, train)
    model = preset.model.replace(vocab_size=corpus.tokenizer.vocab_size)
    try:  # restart the high-water mark here (Linux)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = proc_status_mb("VmRSS") or 0.0
    trainer = prepare_trainer(corpus, model, train)
    times, done = [], None
    for event in trainer.run():
        if isinstance(event, Step):
            times.append(event.elapsed_s)
        elif isinstance(event, Done):
            done = event
    step_s = median_step(times, 5)
    return {"preset": preset_name, "steps": train.max_steps, "run_s": done.train_seconds,
            "step_s": done.train_seconds / max(len(times), 1) if math.isnan(step_s) else step_s,
            "memory_mb": (proc_status_mb("VmHWM") or 0.0) - before}


def predicted(preset_name: str, steps: int = 0) -> dict:
    from playground.engine.data.corpus import distinct_windows
    from playground.engine.presets import PRESETS
    from playground.engine.training.estimate import estimate
    preset = PRESETS[preset_name]
    train = preset.train.replace(max_steps=steps) if steps else preset.train
    text = corpus_text(preset.corpus)
    n_train = len(text) - int(len(text) * train.val_fraction)
    vocab = train.bpe_vocab if train.tokenizer == "bpe" else len(set(text))
    est = estimate(preset.model.replace(vocab_size=vocab), train,
                   distinct_windows(text[:n_train], preset.model.block_size))
    return {"step_s": est.step_s, "run_s": est.run_s, "memory_mb": est.memory_bytes / 2**20}


def rows(quick: bool, env: dict) -> list[dict]:
    from playground.engine.presets import PRESETS
    from playground.engine.training.estimate import calibrate
    peak = calibrate()  # as the window does once torch has loaded: estimates for this machine
    table, ok = {}, True
    for name, preset in PRESETS.items():
        if preset.device != "cpu":
            continue  # the window lists CPU presets only, and its estimate is for this CPU
        steps = min(preset.train.max_steps, 100) if quick else 0
        want = predicted(name, steps)
        # this machine's speed varies by up to 30% between processes: short runs are measured
        # three times, in fresh processes, and the median of each figure compared
        runs = [_measure_in_child(name, steps, env)
                for _ in range(3 if want["run_s"] < 30 and not quick else 1)]
        got = {k: statistics.median(r[k] for r in runs) if isinstance(runs[0][k], float) else runs[0][k]
               for k in runs[0]}
        got["runs"] = len(runs)
        errors = {k: want[k] / got[k] - 1 for k in ("step_s", "run_s", "memory_mb") if got[k] > 0}
        table[name] = {"measured": got, "estimated": want, "errors": errors}
        ok = ok and all(abs(e) <= GOAL for e in errors.values())
    worst = {k: max(table, key=lambda n: abs(table[n]["errors"].get(k, 0))) for k in ("run_s", "memory_mb")}
    text = "; ".join(f"{n}: run {t['estimated']['run_s']:.1f}/{t['measured']['run_s']:.1f} s, "
                     f"memory {t['estimated']['memory_mb']:.0f}/{t['measured']['memory_mb']:.0f} MB"
                     for n, t in table.items())
    return [{"name": "estimates", "target": "window's time and memory estimates within 30% for every preset",
             "measured": f"worst run time {table[worst['run_s']]['errors']['run_s']:+.0%} ({worst['run_s']}), "
                         f"worst memory {table[worst['memory_mb']]['errors'].get('memory_mb', 0):+.0%} "
                         f"({worst['memory_mb']})",
             "reference": f"estimated/measured: {text}; estimates scaled to this machine's matmul peak, "
                          f"{peak / 1e9:.0f} GFLOP/s", "passed": ok, "details": {"presets": table, "matmul_peak": peak}}]


def _measure_in_child(name: str, steps: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "playground.bench.estimates", "--preset", name,
                          "--steps", str(steps)], env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="measure one preset's run for the estimates row")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--steps", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.preset, args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
