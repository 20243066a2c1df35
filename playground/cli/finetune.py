"""`python -m playground finetune BASE`: adapt a model you have (one of ours, or a GPT-2 or
Starcoder2 folder from transformers) to new text, fully or with LoRA, watching what it forgets
of its original text; write the adapted model and, for LoRA, the adapter alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from playground.cli.common import (
    Progress,
    add_corpus_flags,
    add_setting_flags,
    follow,
    resolve_corpus,
    setting_edits,
    stop_on_ctrl_c,
)


def add_arguments(f) -> None:
    from playground.engine.config import AdaptConfig, TrainConfig
    f.add_argument("base", metavar="BASE", help="a model file, or a transformers folder (GPT-2, Starcoder2)")
    add_corpus_flags(f, "a built-in corpus, or a public-domain text downloaded once")
    add_setting_flags(f, AdaptConfig)
    add_setting_flags(f, TrainConfig, only={"batch", "steps", "lr", "warmup", "eval_interval", "seed", "threads",
                                            "keep", "patience"})
    original = f.add_mutually_exclusive_group()
    original.add_argument("--base-text", metavar="FILE",
                          help="the base's original text, to measure what it forgets (a model file of ours keeps it)")
    original.add_argument("--base-builtin", metavar="NAME", help="the base's original text, a built-in corpus")
    f.add_argument("--drop-unknown", action="store_true",
                   help="leave out characters the base never saw (otherwise they are refused, named)")
    f.add_argument("--out", metavar="CKPT", help="save the adapted model here (for LoRA: merged)")
    f.add_argument("--adapter-out", metavar="DIR",
                   help="LoRA: also save the adapter alone, in PEFT's layout for our transformers export of the base")
    f.add_argument("--log-json", metavar="FILE", help="one JSON object per event (evaluations carry base_val_loss)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from playground.engine.config import AdaptConfig, TrainConfig
    from playground.engine.data.corpus import builtin_text, read_text_file
    from playground.engine.errors import ConfigError
    from playground.engine.events import Eval
    from playground.engine.model import checkpoint
    from playground.engine.model.lora import trainable
    from playground.engine.training.adapt import finetune_settings, prepare_adaptation, save_adapter
    from playground.engine.training.health import forgetting
    adapt = AdaptConfig().replace(**setting_edits(args, AdaptConfig)).check()
    if args.adapter_out and adapt.method != "lora":
        raise ConfigError("--adapter-out needs --method lora (a full fine-tune changes every weight)")
    out: Optional[Path] = checkpoint.destination(args.out) if args.out else None
    base = checkpoint.load(args.base)
    train = finetune_settings(base, **setting_edits(args, TrainConfig))
    if not _corpus_named(args):
        raise ConfigError("give the new text: --corpus FILE, --text STR or --builtin NAME")
    name, text = resolve_corpus(args, "")
    original_text = (read_text_file(args.base_text) if args.base_text else
                     builtin_text(args.base_builtin) if args.base_builtin else None)
    trainer = prepare_adaptation(base, name, text, train, adapt, args.base_text or args.base_builtin,
                                 original_text, args.drop_unknown, in_place=True)
    progress = Progress(sys.stderr, args.quiet)
    n_train, n_total = trainable(trainer.model)
    progress.line(f"adapting {Path(args.base).name} ({adapt.method}"
                  + (f", rank {adapt.rank}, alpha {adapt.alpha:g}, on {adapt.targets}" if adapt.method == "lora" else "")
                  + f"): {n_train:,} of {n_total:,} parameters train ({n_train / n_total:.2%})")
    if trainer.original is None:
        progress.line("the base's original text is not known: what it forgets is not measured "
                      "(--base-text FILE or --base-builtin NAME)")
    stop_on_ctrl_c(trainer.control.stop)
    points = []  # (step, new text's validation, original text's validation) of each evaluation

    def evaluated(ev) -> None:
        if isinstance(ev, Eval):
            val = "n/a" if ev.val_loss is None else f"{ev.val_loss:.4f}"
            base_val = "" if ev.base_val_loss is None else f", original text {ev.base_val_loss:.4f}"
            progress.line(f"step {ev.step}: train loss {ev.train_loss:.4f}, new text {val}{base_val}")
            points.append((ev.step, ev.val_loss, ev.base_val_loss))

    done = follow(trainer.run(), progress, args.log_json, evaluated)
    progress.line(f"{done.status} at step {done.last_step} in {done.train_seconds:.1f} s"
                  + (f" - {done.message}" if done.message else ""))
    hint = forgetting(points, adapt.method, adapt.replay, flags=True)
    if hint:
        progress.line(hint)
    if out is not None:
        progress.line(f"saved {checkpoint.save(out, trainer.checkpoint())}")
    if args.adapter_out:
        progress.line(f"saved the adapter alone in {save_adapter(trainer.model, adapt, args.adapter_out, Path(args.base).name)}")
    if out is None and not args.adapter_out:
        progress.line("not saved (add --out FILE.safetensors to keep the adapted model)")
    return 1 if done.status == "diverged" else 0


def _corpus_named(args) -> bool:
    return any(getattr(args, n, None) is not None for n in ("text", "corpus", "builtin"))
