"""`python -m playground dpo BASE`: tune a model by preference (DPO) on pairs of completions, one
chosen over the other: a JSON Lines file (--pairs, as rated in the window's Preferences view or
written by any tool that speaks TRL's field names), or pairs made without a person (--auto
arithmetic: the right sum chosen, the model's own wrong one rejected)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from playground.cli.common import Progress, add_setting_flags, follow, setting_edits, stop_on_ctrl_c


def add_arguments(f) -> None:
    from playground.engine.config import AdaptConfig, PreferenceConfig, TrainConfig
    from playground.engine.training.preference import AUTO
    f.add_argument("base", metavar="BASE", help="the model file to tune")
    pairs = f.add_mutually_exclusive_group()
    pairs.add_argument("--pairs", metavar="FILE",
                       help='JSON Lines, one {"prompt", "chosen", "rejected"} object a line (TRL\'s field names)')
    pairs.add_argument("--auto", choices=sorted(AUTO),
                       help="make the pairs from the corpus's training lines: the right answer chosen, the "
                            "model's own wrong one rejected (its held-out tasks are never used)")
    f.add_argument("--samples", type=int, default=2, metavar="N",
                   help="--auto: answers sampled at temperature 1 for a line the model answers right "
                        "greedily, looking for a wrong one (default 2)")
    f.add_argument("--pairs-out", metavar="FILE", help="--auto: also write the pairs it made, as JSON Lines")
    add_setting_flags(f, PreferenceConfig)
    add_setting_flags(f, AdaptConfig, only={"method", "rank", "alpha", "targets"})
    add_setting_flags(f, TrainConfig, only={"batch", "steps", "lr", "warmup", "eval_interval", "seed", "threads"})
    original = f.add_mutually_exclusive_group()
    original.add_argument("--base-text", metavar="FILE",
                          help="the base's original text, to measure (and keep) what the tuning costs "
                               "(a model file of ours keeps it)")
    original.add_argument("--base-builtin", metavar="NAME", help="the base's original text, a built-in corpus")
    f.add_argument("--out", metavar="CKPT", help="save the tuned model here (for LoRA: merged)")
    f.add_argument("--log-json", metavar="FILE",
                   help="one JSON object per event (preference_eval: loss, accuracy and margin on training "
                        "and held-out pairs, original-text loss, task accuracy)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from playground.engine.config import AdaptConfig, PreferenceConfig, TrainConfig
    from playground.engine.data.corpus import builtin_text, read_text_file
    from playground.engine.errors import ConfigError
    from playground.engine.events import PreferenceEval
    from playground.engine.model import checkpoint
    from playground.engine.training.pairs import preference_settings, read_pairs, write_pairs
    from playground.engine.training.preference import auto_pairs, prepare_preference
    if not args.pairs and not args.auto:
        raise ConfigError("give the pairs: --pairs FILE.jsonl, or --auto arithmetic to make them")
    if args.pairs_out and not args.auto:
        raise ConfigError("--pairs-out writes the pairs --auto makes; with --pairs you have them already")
    if args.samples < 0:
        raise ConfigError(f"--samples must be 0 or more, not {args.samples}")
    edits = setting_edits(args, PreferenceConfig)
    pref = PreferenceConfig().replace(**edits).check()
    adapt = AdaptConfig(method="full").replace(**setting_edits(args, AdaptConfig)).check()
    out: Optional[Path] = checkpoint.destination(args.out) if args.out else None
    base = checkpoint.load(args.base)
    train = preference_settings(base, **setting_edits(args, TrainConfig))
    progress = Progress(sys.stderr, args.quiet)
    if args.auto:
        progress.line(f"making pairs from {args.auto}'s training lines (the model answers each, greedily "
                      f"and {args.samples} times sampled)...")
        pairs, made = auto_pairs(base, args.auto, args.samples, seed=train.seed)
        progress.line(f"{made['pairs']:,} pairs: the model answered {made['greedy_right']:,} of {made['sums']:,} "
                      f"training lines right greedily ({made['heldout_tasks']} held-out tasks never used)")
        if args.pairs_out:
            progress.line(f"wrote the pairs to {write_pairs(args.pairs_out, pairs)}")
        name = f"{args.auto} (auto)"
    else:
        pairs, name = read_pairs(args.pairs), Path(args.pairs).name
    original_text = (read_text_file(args.base_text) if args.base_text else
                     builtin_text(args.base_builtin) if args.base_builtin else None)
    trainer, note = prepare_preference(base, pairs, train, pref, adapt, args.base_text or args.base_builtin,
                                       original_text, name, args.auto, "original_weight" in edits, in_place=True)
    if note:
        progress.line(note.replace("(name the text)", "(--base-text FILE or --base-builtin NAME)"))
    pref = trainer.pref
    n_train, n_total = trainer.trainable
    progress.line(f"DPO on {len(trainer.train_pairs):,} pairs ({len(trainer.heldout):,} held out), beta "
                  f"{pref.beta:g}, chosen NLL {pref.nll:g}, original text {pref.original_weight:g}, "
                  f"{adapt.method}" + (f" rank {adapt.rank}" if adapt.method == "lora" else "")
                  + f": {n_train:,} of {n_total:,} parameters train")
    stop_on_ctrl_c(trainer.control.stop)
    done = follow(trainer.run(), progress, args.log_json,
                  lambda ev: progress.line(describe(ev)) if isinstance(ev, PreferenceEval) else None)
    progress.line(f"{done.status} at step {done.last_step} in {done.train_seconds:.1f} s"
                  + (f" - {done.message}" if done.message else ""))
    if out is not None:
        progress.line(f"saved {checkpoint.save(out, trainer.checkpoint())}")
    else:
        progress.line("not saved (add --out FILE.safetensors to keep the tuned model)")
    return 1 if done.status == "diverged" else 0


def describe(ev) -> str:
    """One evaluation in a line: what the pairs say, then what it costs and what it does."""
    def share(x):
        return "n/a" if x is None else f"{x:.1%}"
    if ev.step == 0:  # the model is its own reference: every margin is 0
        parts = [f"step 0: loss {ev.loss:.4f} (the model is its own reference: margins 0)"]
    else:
        parts = [f"step {ev.step}: loss {ev.loss:.4f}, prefers the chosen on {share(ev.accuracy)} of training pairs"]
    if ev.heldout_accuracy is not None and ev.step:
        parts.append(f"{share(ev.heldout_accuracy)} held out (margin {ev.heldout_margin:+.3f})")
    if ev.base_val_loss is not None:
        parts.append(f"original text {ev.base_val_loss:.4f}")
    if ev.task_accuracy is not None:
        parts.append(f"tasks {share(ev.task_accuracy)}")
    return ", ".join(parts)
