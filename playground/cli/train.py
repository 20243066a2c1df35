"""`gpt-playground train`: settings from a preset and flags, a progress bar, JSON logs (and
TensorBoard files of the same events);
--resume continues a saved model by the engine's one set of rules (engine/training/prepare.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from playground.cli.common import (
    Progress,
    add_corpus_flags,
    add_setting_flags,
    corpus_given,
    follow,
    resolve_corpus,
    setting_edits,
    stop_on_ctrl_c,
)


def add_arguments(t) -> None:
    from playground.engine.config import ModelConfig, TrainConfig
    from playground.engine.data.download import SOURCES
    from playground.engine.presets import PRESETS
    t.add_argument("--preset", choices=sorted(PRESETS), help="starting settings (default: seed)")
    add_corpus_flags(t, "a built-in corpus, or a public-domain text downloaded once: "
                        + ", ".join(f"{s.name} ({s.title}, {s.size_text})" for s in SOURCES.values()))
    add_setting_flags(t, ModelConfig, TrainConfig)
    t.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train (default: the preset's, cpu for all but shakespeare-gpu)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model (slow to start; off by default)")
    t.add_argument("--autograd", action="store_true",
                   help="torch's own optimizers instead of the flat AdamW (to compare)")
    t.add_argument("--tasks", metavar="FILE",
                   help="held-out tasks (prompt<TAB>expected per line) answered at each evaluation; "
                        "the arithmetic and counting corpora bring their own")
    t.add_argument("--out", metavar="CKPT", help="save the model here (.safetensors)")
    t.add_argument("--resume", metavar="CKPT", help="continue training this checkpoint")
    t.add_argument("--log-json", metavar="FILE", help="write one JSON object per event")
    t.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard event files of the same events, in a new folder under DIR "
                        "per run (tensorboard --logdir DIR shows the runs side by side; needs the tensorboard "
                        "extra)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def configs_from_args(args):
    """(corpus name, model config without vocab, train config) from the preset plus flags,
    edited by the same rule as the window's settings (TrainConfig.edited)."""
    from playground.engine.config import ModelConfig, TrainConfig
    from playground.engine.presets import get_preset
    preset = get_preset(args.preset or "seed")
    train = preset.train.edited(**setting_edits(args, TrainConfig))
    return preset.corpus, preset.model.replace(**setting_edits(args, ModelConfig)), train


def _tasks(args, corpus_name: str) -> tuple:
    """--tasks FILE, else the held-out tasks the built-in corpus ships (if any)."""
    from playground.engine.data.tasks import builtin_tasks, read_tasks
    return tuple(read_tasks(args.tasks)) if args.tasks else builtin_tasks(corpus_name)


def make_trainer(args, device: str = "cpu"):
    """The run the flags describe, by the engine's one preparation (and, with --resume, its
    rules for continuing: the command line keeps the file's own training settings unless a
    preset or flags change them, and its corpus unless another is named)."""
    from playground.engine.config import TrainConfig
    from playground.engine.model import checkpoint
    from playground.engine.training.prepare import prepare_run
    corpus_name, model_cfg, train_cfg = configs_from_args(args)
    options = {"device": device, "compile": args.compile, "autograd": args.autograd}
    train_cfg.check()
    resume = None
    if args.resume:
        resume = checkpoint.load(args.resume)
        if args.preset is None and resume.train_config is not None:
            train_cfg = resume.train_config.edited(**setting_edits(args, TrainConfig))
        if args.tokenizer is None:  # not asked for: the model's own
            train_cfg = train_cfg.replace(tokenizer=resume.tokenizer.kind)
        if args.bpe_vocab is None and resume.tokenizer.kind == "bpe":
            train_cfg = train_cfg.replace(bpe_vocab=resume.train_config.bpe_vocab if resume.train_config
                                          else resume.tokenizer.vocab_size)
        if not corpus_given(args):
            corpus_name = resume.state.get("corpus", corpus_name)
    name, text = resolve_corpus(args, corpus_name)
    return prepare_run(name, text, model_cfg, train_cfg, resume, _tasks(args, name), **options)


def run(args) -> int:
    from playground.engine.errors import ConfigError
    from playground.engine.presets import get_preset
    from playground.engine.training.device import check_device
    from playground.engine.training.distributed import init_from_env, shutdown
    preset = get_preset(args.preset or "seed")
    try:
        device = check_device(args.device or preset.device)
    except ConfigError as exc:
        if args.device:
            raise
        raise ConfigError(f"{exc}. The preset {preset.name} is meant for a {preset.device} GPU: "
                          "pass --device cpu to train it here anyway (slowly)") from None
    rank, world, device = init_from_env(device)
    clean = False
    try:
        code = _train(args, str(device), rank, world)
        clean = True
        return code
    finally:
        shutdown(clean)


def _train(args, device: str, rank: int, world: int) -> int:
    from playground.engine.events import Eval, Sample, Started
    from playground.engine.model import checkpoint
    from playground.engine.wording import plural
    if rank != 0:  # other ranks train silently; rank 0 logs and saves
        args.log_json, args.tensorboard, args.out, args.quiet = None, None, None, True
    out: Optional[Path] = checkpoint.destination(args.out) if args.out else None
    from playground.engine.training import tensorboard_log
    if args.tensorboard:
        tensorboard_log.check_available()   # before the corpus is prepared, not after
    trainer = make_trainer(args, device)
    board = tensorboard_log.for_trainer(args.tensorboard, trainer) if args.tensorboard else None
    progress = Progress(sys.stderr, args.quiet) if rank == 0 else Progress(open(os.devnull, "w"), True)
    stop_on_ctrl_c(trainer.control.stop)

    def shown(ev) -> None:
        if isinstance(ev, Started):
            if board:
                progress.line(f"TensorBoard: {board.folder} (tensorboard --logdir {args.tensorboard})")
            ranks = f" x {world} ranks" if world > 1 else ""
            what = (f"{ev.n_train:,} characters ({ev.vocab_size} distinct)" if ev.tokenizer == "char"
                    else f"{ev.n_train:,} tokens (BPE, {ev.vocab_size} in the vocabulary, "
                         f"{ev.chars_per_token:.2f} characters per token)")
            progress.line(f"training {ev.params:,} parameters on {what}, steps {ev.first_step + 1}-{ev.last_step}, "
                          f"{plural(ev.threads, 'thread')}{ranks} on {device}")
            if ev.message:
                progress.line(ev.message)
        elif isinstance(ev, Eval):
            val = "n/a" if ev.val_loss is None else \
                f"{ev.val_loss:.4f} (ppl {ev.val_ppl:.2f}, {ev.val_bpc:.3f} bits/char)"
            tasks = "" if ev.task_accuracy is None else f", held-out tasks {ev.task_accuracy:.0%}"
            progress.line(f"step {ev.step}: train loss {ev.train_loss:.4f} "
                          f"(ppl {ev.train_ppl:.2f}, {ev.train_bpc:.3f} bits/char), val loss {val}{tasks}")
        elif isinstance(ev, Sample):
            if ev.text:
                progress.line(f"  sample: {ev.text!r}")
            for prompt, expected, got in ev.answers:
                mark = "right" if got.startswith(expected) else f"wrong, expected {expected!r}"
                progress.line(f"  task: {prompt!r} -> {got!r} ({mark})")

    done = follow(tensorboard_log.logged(trainer.run(), board), progress, args.log_json, shown)
    at = done.last_step if done.last_step is not None else done.step
    progress.line(f"{done.status} at step {at} in {done.train_seconds:.1f} s; "
                  f"final loss {done.final_loss if done.final_loss is None else round(done.final_loss, 4)}"
                  + (f" - {done.message}" if done.message else ""))
    if out is not None:
        path = checkpoint.save(out, trainer.checkpoint())
        progress.line(f"saved {path}")
    elif rank == 0:
        progress.line("not saved (add --out FILE.safetensors to keep the model)")
    if done.status == "diverged":
        return 1
    return 0
