"""`python -m playground scale`: a ladder of model sizes trained one after another, a line per
finished run, the fitted power law L(N) = E + A·N^-α, and optionally the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Optional

from playground.engine import scaling
from playground.engine.control import TrainControl
from playground.engine.corpus import build_corpus, resolve_source
from playground.engine.events import Started, Step
from playground.engine.presets import get_preset

if TYPE_CHECKING:  # train_cli loads torch: not for `--help` or the other commands' parsers
    from playground.train_cli import Progress

DEFAULT_PRESET = "shakespeare-fast"
DEFAULT_TOKENS = 1_000_000


def _positive(text: str) -> float:
    """A finite number above 0 (a budget: 2e6 tokens, 1e13 FLOPs)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _budgets(text: str) -> list[float]:
    """--frontier 1e12,3e12,1e13 as numbers."""
    return [_positive(part) for part in text.replace(" ", "").split(",") if part] or \
        [_positive(text)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from playground.engine.corpus import BUILTINS
    from playground.engine.download import SOURCES
    from playground.engine.presets import PRESETS
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", metavar="FILE", help="a UTF-8 text file to learn")
    src.add_argument("--builtin", choices=sorted(BUILTINS) + sorted(SOURCES),
                     help="a built-in corpus, or a text downloaded once (default: the preset's, "
                          "Tiny Shakespeare for the default preset)")
    src.add_argument("--text", metavar="STR", help="the corpus as a literal string")
    p.add_argument("--no-download", action="store_true", help="never download a corpus")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                   help=f"the base settings every size shares (default {DEFAULT_PRESET})")
    p.add_argument("--sizes", type=int, default=5, help="model sizes in the ladder (3 to 12, default 5)")
    p.add_argument("--smallest", type=int, default=10_000, help="parameters of the smallest size")
    p.add_argument("--largest", type=int, default=2_000_000, help="parameters of the largest size")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--tokens", type=_positive, metavar="N",
                        help=f"the same training tokens for every size (default {DEFAULT_TOKENS:,})")
    budget.add_argument("--flops", type=_positive, metavar="F",
                        help="the same compute for every size (FLOPs = 6 x params x tokens)")
    budget.add_argument("--frontier", type=_budgets, metavar="F1,F2,...",
                        help="equal-compute mode: every size at each of these FLOP budgets, "
                             "and the best size per budget")
    p.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    p.add_argument("--threads", type=int, help="CPU threads (0: auto)")
    p.add_argument("--out-dir", metavar="DIR", help="keep each run's model in this folder")
    p.add_argument("--json", metavar="FILE", help="write the runs and the fit as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _setup(args):
    """(corpus, base model, base training settings) from the preset and flags."""
    preset = get_preset(args.preset)
    edits = {k: v for k, v in (("seed", args.seed), ("threads", args.threads)) if v is not None}
    train = preset.train.edited(**edits).check()
    if args.text is not None:
        source = {"text": args.text}
    elif args.corpus is not None:
        source = {"path": args.corpus}
    else:
        from playground.train_cli import _download_progress
        source = {"builtin": args.builtin or preset.corpus, "allow_download": not args.no_download,
                  "fetched": _download_progress}
    name, text = resolve_source(**source)
    corpus = build_corpus(name, text, train.val_fraction, preset.model.block_size,
                          kind=train.tokenizer, vocab_size=train.bpe_vocab)
    return corpus, preset.model, train


def run_scale(args) -> int:
    from playground.train_cli import Progress, install_stop_on_sigint
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
    install_stop_on_sigint(control.stop)
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
