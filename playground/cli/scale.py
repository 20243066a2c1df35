"""`python -m playground scale`: a ladder of model sizes trained one after another, a line per
finished run, the fitted power law L(N) = E + A·N^-α, and optionally the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from typing import Optional

from playground.cli.common import (
    Progress,
    add_corpus_flags,
    add_setting_flags,
    positive,
    resolve_corpus,
    setting_edits,
    stop_on_ctrl_c,
)
from playground.engine.events import Started, Step
from playground.engine.presets import get_preset
from playground.engine.training import scaling
from playground.engine.training.control import TrainControl

DEFAULT_PRESET = "shakespeare-fast"
DEFAULT_TOKENS = 1_000_000


def _budgets(text: str) -> list[float]:
    """--frontier 1e12,3e12,1e13 as numbers."""
    return [positive(part) for part in text.replace(" ", "").split(",") if part] or [positive(text)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from playground.engine.config import TrainConfig
    from playground.engine.presets import PRESETS
    add_corpus_flags(p, "a built-in corpus, or a text downloaded once (default: the preset's, "
                        "Tiny Shakespeare for the default preset)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                   help=f"the base settings every size shares (default {DEFAULT_PRESET})")
    p.add_argument("--sizes", type=int, default=5, help="model sizes in the ladder (3 to 12, default 5)")
    p.add_argument("--smallest", type=int, default=10_000, help="parameters of the smallest size")
    p.add_argument("--largest", type=int, default=2_000_000, help="parameters of the largest size")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--tokens", type=positive, metavar="N",
                        help=f"the same training tokens for every size (default {DEFAULT_TOKENS:,})")
    budget.add_argument("--flops", type=positive, metavar="F",
                        help="the same compute for every size (FLOPs = 6 x params x tokens)")
    budget.add_argument("--frontier", type=_budgets, metavar="F1,F2,...",
                        help="equal-compute mode: every size at each of these FLOP budgets, "
                             "and the best size per budget")
    add_setting_flags(p, TrainConfig, only={"seed", "threads"})  # the rest is the preset's, per size
    p.add_argument("--out-dir", metavar="DIR", help="keep each run's model in this folder")
    p.add_argument("--json", metavar="FILE", help="write the runs and the fit as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _setup(args):
    """(corpus, base model, base training settings) from the preset and flags."""
    from playground.engine.config import TrainConfig
    from playground.engine.training.prepare import prepare_corpus
    preset = get_preset(args.preset)
    train = preset.train.edited(**setting_edits(args, TrainConfig)).check()
    name, text = resolve_corpus(args, preset.corpus)
    return prepare_corpus(name, text, preset.model.block_size, train), preset.model, train


def run(args) -> int:
    scaling.check_range(args.sizes, args.smallest, args.largest)  # before any download
    corpus, model, train = _setup(args)
    control = TrainControl()
    limits = {"smallest": args.smallest, "largest": args.largest, "out_dir": args.out_dir}
    if args.frontier:
        events = scaling.run_frontier(corpus, model, train, args.sizes, args.frontier, control, **limits)
    else:
        budget = scaling.Budget("flops", args.flops) if args.flops else \
            scaling.Budget("tokens", args.tokens or DEFAULT_TOKENS)
        events = scaling.run_ladder(corpus, model, train, args.sizes, budget, control, **limits)
    stop_on_ctrl_c(control.stop)
    done = _drive(events, Progress(sys.stderr, args.quiet), corpus.name)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(to_json(done), f, indent=2)
    return 0


def _drive(events, progress: Progress, corpus_name: str) -> scaling.LadderDone:
    """Print the plan, a line per finished run and the fit; return the LadderDone."""
    total, first, last = 0, 0, 0
    for ev in events:
        if isinstance(ev, scaling.LadderStarted):
            total = len(ev.runs)
            progress.line(_plan_line(ev, corpus_name))
            progress.line(f"size rule: {ev.rule}")
            if ev.warning:
                progress.line(f"warning: {ev.warning}")
        elif isinstance(ev, scaling.RunEvent):
            if isinstance(ev.event, Started):
                first, last = ev.event.first_step, ev.event.last_step
            elif isinstance(ev.event, Step):
                progress.step(ev.event, first, last)
        elif isinstance(ev, scaling.RunFinished):
            progress.line(run_line(ev, total))
        elif isinstance(ev, scaling.LadderDone):
            for line in summary_lines(ev):
                progress.line(line)
            return ev
    raise RuntimeError("the ladder ended without LadderDone")  # pragma: no cover


def _plan_line(ev: scaling.LadderStarted, corpus_name: str) -> str:
    shapes = {r["size_index"]: f"{r['params']:,} ({r['n_layer']}x{r['n_embd']})" for r in ev.runs}
    sizes = ", ".join(shapes[i] for i in sorted(shapes))
    if ev.mode == "tokens":
        budget = f"{_tokens(ev.budgets[0])} tokens each"
    elif ev.mode == "flops":
        budget = f"{ev.budgets[0]:.2g} FLOPs each"
    else:
        budget = "each of " + ", ".join(f"{b:.2g}" for b in ev.budgets) + " FLOPs"
    return f"scaling ladder on {corpus_name}: {len(ev.runs)} runs, {budget}; sizes {sizes}"


def _tokens(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e4 else f"{n:,.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_line(ev: scaling.RunFinished, total: int) -> str:
    """run 2/5: 48,321 params, 3.1 M tokens, 1.2e+12 FLOPs, val 1.92 (best at step 300), ..."""
    r = ev.result
    val = "val n/a" if r.val_loss is None else f"val {r.val_loss:.3f} (best at step {r.best_step})"
    left = "" if ev.seconds_left is None or ev.result.index + 1 >= total else \
        f" — about {_duration(ev.seconds_left)} left"
    return (f"run {r.index + 1}/{total}: {r.params:,} params, {_tokens(r.tokens)} tokens, "
            f"{r.flops:.2g} FLOPs, {val}, {r.train_seconds:.1f} s, {r.verdict}{left}")


def fit_line(fit: Optional[scaling.Fit]) -> str:
    if fit is None:
        return "no fit: a power law needs at least three finished runs with a validation loss"
    line = (f"L(N) = E + A·N^-α: E={fit.E:.3f}, A={fit.A:.3g}, α={fit.alpha:.3f} "
            f"(R²={fit.r2:.3f}, {fit.points} runs)")
    if fit.next_params and fit.predicted_loss is not None:
        line += f"; next size N={fit.next_params:,} predicts {fit.predicted_loss:.3f}"
    return line


def summary_lines(done: scaling.LadderDone) -> list[str]:
    lines = [f"stopped: kept {len(done.runs)} finished run(s)"] if done.stopped else []
    if done.frontier:
        lines += [f"budget {b:.2g} FLOPs: best size {p:,} params (val {loss:.3f})"
                  for b, p, loss in done.frontier]
    else:
        lines.append(fit_line(done.fit))
        if done.fit is not None and done.fit.warning:
            lines.append(f"warning: {done.fit.warning}")
    return lines


def to_json(done: scaling.LadderDone) -> dict:
    """{"runs": [...], "fit": {...} or null}: plain JSON (non-finite numbers become null)."""
    runs = [{**asdict(r), "last_val_losses": [list(p) for p in r.last_val_losses]}
            for r in done.runs]
    return _finite({"runs": runs, "fit": None if done.fit is None else asdict(done.fit)})


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
