"""`python -m playground train`: settings from a preset and flags, a progress bar, JSON logs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from playground.engine import checkpoint
from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.corpus import build_corpus, resolve_source
from playground.engine.errors import ConfigError
from playground.engine.events import Done, Eval, Sample, Started, Step, to_json_dict
from playground.engine.presets import get_preset
from playground.engine.train import Trainer

MODEL_FLAGS = {"layers": "n_layer", "heads": "n_head", "width": "n_embd", "block": "block_size",
               "dropout": "dropout", "position": "position", "head_bias": "head_bias"}
TRAIN_FLAGS = {"batch": "batch_size", "steps": "max_steps", "lr": "learning_rate", "seed": "seed",
               "threads": "threads", "eval_interval": "eval_interval", "optimizer": "optimizer",
               "warmup": "warmup_steps", "keep": "keep", "patience": "patience",
               "tokenizer": "tokenizer", "vocab_size": "bpe_vocab"}


def _given(args, flags: dict[str, str]) -> dict:
    return {field: getattr(args, flag) for flag, field in flags.items() if getattr(args, flag) is not None}


def configs_from_args(args) -> tuple[str, ModelConfig, TrainConfig]:
    """(corpus name, model config without vocab, train config) from the preset plus flags,
    edited by the same rule as the window's settings (TrainConfig.edited)."""
    preset = get_preset(args.preset or "seed")
    train = preset.train.edited(**_given(args, TRAIN_FLAGS))
    return preset.corpus, preset.model.replace(**_given(args, MODEL_FLAGS)), train


def _source(args, default_builtin: str) -> dict:
    if args.text is not None:
        return {"text": args.text}
    if args.corpus is not None:
        return {"path": args.corpus}
    return {"builtin": args.builtin or default_builtin, "allow_download": not args.no_download,
            "fetched": _download_progress}


def _tasks(args, corpus_name: str) -> tuple:
    """--tasks FILE, else the held-out tasks the built-in corpus ships (if any)."""
    from playground.engine.tasks import builtin_tasks, read_tasks
    return tuple(read_tasks(args.tasks)) if args.tasks else builtin_tasks(corpus_name)


def _download_progress(done: int, total: int) -> None:
    """One line on stderr that fills up while a corpus downloads."""
    sys.stderr.write(f"\rdownloading: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def make_trainer(args, device: str = "cpu") -> Trainer:
    corpus_name, model_cfg, train_cfg = configs_from_args(args)
    options = {"device": device, "compile": args.compile, "autograd": args.autograd}
    train_cfg.check()
    if args.resume:
        ckpt = checkpoint.load(args.resume)
        kind = ckpt.tokenizer.kind
        if args.tokenizer not in (None, kind) or (args.vocab_size is not None and kind == "char"):
            raise ConfigError(f"{Path(args.resume).name} reads {kind} tokens: a model keeps its "
                              "tokenizer, so --tokenizer and --vocab-size do not apply when continuing")
        if args.preset is None and ckpt.train_config is not None:
            # continuing: keep the run's own settings unless flags override them
            train_cfg = ckpt.train_config.edited(**_given(args, TRAIN_FLAGS))
        given = any(x is not None for x in (args.text, args.corpus, args.builtin))
        default = ckpt.state.get("corpus", corpus_name)
        name, text = resolve_source(**_source(args, default if not given else corpus_name))
        corpus = build_corpus(name, text, train_cfg.val_fraction, ckpt.model_config.block_size,
                              tokenizer=ckpt.tokenizer, tasks=_tasks(args, name))
        train_cfg = train_cfg.replace(tokenizer=kind, bpe_vocab=max(ckpt.tokenizer.vocab_size, 256))
        return Trainer.resume(ckpt, corpus, train_cfg, **options)
    name, text = resolve_source(**_source(args, corpus_name))
    corpus = build_corpus(name, text, train_cfg.val_fraction, model_cfg.block_size,
                          tasks=_tasks(args, name), kind=train_cfg.tokenizer,
                          vocab_size=train_cfg.bpe_vocab)
    model_cfg = model_cfg.replace(vocab_size=corpus.tokenizer.vocab_size).check()
    return Trainer(model_cfg, train_cfg, corpus, **options)


class Progress:
    """A one-line progress bar on a terminal; plain lines otherwise."""

    def __init__(self, stream: TextIO, quiet: bool):
        self.stream, self.quiet = stream, quiet
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_draw = 0.0

    def step(self, ev: Step, first: int, last: int) -> None:
        if self.quiet or not self.tty or time.monotonic() - self.last_draw < 0.1 and ev.step != last:
            return
        self.last_draw = time.monotonic()
        frac = (ev.step - first) / max(last - first, 1)
        bar = "#" * int(frac * 30)
        left = ev.elapsed_s / max(frac, 1e-9) * (1 - frac)
        self.stream.write(f"\r[{bar:<30}] {ev.step}/{last} loss {ev.loss:.4f} "
                          f"{ev.tokens_per_s:,.0f} tok/s  left {left:4.0f}s ")
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r" + " " * 90 + "\r")
        print(text, file=self.stream, flush=True)


def run_train(args) -> int:
    from playground.engine.device import check_device
    from playground.engine.distributed import init_from_env, shutdown
    from playground.engine.errors import ConfigError
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
    if rank != 0:  # other ranks train silently; rank 0 logs and saves
        args.log_json, args.out, args.quiet = None, None, True
    out: Optional[Path] = checkpoint.destination(args.out) if args.out else None
    trainer = make_trainer(args, device)
    log_file = open(args.log_json, "w", encoding="utf-8") if args.log_json else None
    progress = Progress(sys.stderr, args.quiet) if rank == 0 else Progress(open(os.devnull, "w"), True)
    install_stop_on_sigint(trainer.control.stop)
    first = last = 0
    done: Optional[Done] = None
    try:
        for ev in trainer.run():
            if log_file:
                log_file.write(json.dumps(to_json_dict(ev)) + "\n")
            if isinstance(ev, Started):
                first, last = ev.first_step, ev.last_step
                ranks = f" x {world} ranks" if world > 1 else ""
                what = (f"{ev.n_train:,} characters ({ev.vocab_size} distinct)" if ev.tokenizer == "char"
                        else f"{ev.n_train:,} tokens (BPE, {ev.vocab_size} in the vocabulary, "
                             f"{ev.chars_per_token:.2f} characters per token)")
                progress.line(f"training {ev.params:,} parameters on {what}, steps {first + 1}-{last}, "
                              f"{ev.threads} thread(s){ranks} on {device}")
                if ev.message:
                    progress.line(ev.message)
            elif isinstance(ev, Step):
                progress.step(ev, first, last)
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
            elif isinstance(ev, Done):
                done = ev
    finally:
        if log_file:
            log_file.close()
    assert done is not None
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


def install_stop_on_sigint(stop) -> None:
    """First Ctrl+C stops training cleanly after the current step (and saves); second kills."""
    def handler(signum, frame):
        print("\nstopping after this step (Ctrl+C again to abort)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop()
    signal.signal(signal.SIGINT, handler)
