"""Command line: train, generate, info, scale and bench, over the same engine iterators as the GUI.

Human-readable lines and the progress bar go to stderr; generated text goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional, Sequence

from playground.engine.errors import PlaygroundError


class _Parser(argparse.ArgumentParser):
    """Bad arguments end with one line on stderr and exit code 2, never a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _non_negative(text: str) -> float:
    """A number that is 0 or more; its own range is checked with the settings it belongs to."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: use 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    from playground.engine.corpus import BUILTINS
    from playground.engine.download import SOURCES
    from playground.engine.presets import PRESETS
    parser = _Parser(prog="python -m playground",
                     description="Train a character-level GPT on your CPU and generate from it.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model (from a preset, a corpus, or a checkpoint)")
    t.add_argument("--preset", choices=sorted(PRESETS), help="starting settings (default: seed)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--corpus", metavar="FILE", help="a UTF-8 text file to learn")
    src.add_argument("--text", metavar="STR", help="the corpus as a literal string")
    src.add_argument("--builtin", choices=sorted(BUILTINS) + sorted(SOURCES),
                     help="a built-in corpus, or a public-domain text downloaded once: "
                          + ", ".join(f"{s.name} ({s.title}, {s.size_text})" for s in SOURCES.values()))
    t.add_argument("--no-download", action="store_true",
                   help="never download a corpus; fail if it is not on this machine")
    for flag, kind, what in [("--layers", int, "transformer blocks"), ("--heads", int, "attention heads"),
                             ("--width", int, "embedding width"), ("--block", int, "context length"),
                             ("--dropout", _non_negative, "dropout fraction"),
                             ("--batch", int, "batch size"), ("--steps", int, "optimizer steps"),
                             ("--lr", _non_negative, "peak learning rate (the minimum keeps its ratio)"),
                             ("--warmup", int, "warm-up steps"),
                             ("--seed", int, "random seed"), ("--threads", int, "CPU threads (0: auto)"),
                             ("--eval-interval", int, "steps between evaluations")]:
        t.add_argument(flag, type=kind, help=what)
    t.add_argument("--optimizer", choices=["adamw", "muon"], help="optimizer for the weight matrices")
    t.add_argument("--keep", choices=["best", "last"],
                   help="end with the weights of the lowest validation loss (best, the default) "
                        "or of the last step")
    t.add_argument("--patience", type=int, metavar="N",
                   help="stop after N evaluations without a better validation loss (0: never)")
    t.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train (default: the preset's, cpu for all but shakespeare-gpu)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model (slow to start; off by default)")
    t.add_argument("--autograd", action="store_true",
                   help="torch's own optimizers instead of the flat AdamW (to compare)")
    t.add_argument("--position", choices=["learned", "rope"],
                   help="position scheme for a new model (default learned, the reference)")
    t.add_argument("--no-head-bias", dest="head_bias", action="store_const", const=False,
                   help="a new model without the output head's bias (every export to "
                        "transformers is then exact)")
    t.add_argument("--tokenizer", choices=["char", "bpe"],
                   help="char: one token per character (default); bpe: byte-level subwords "
                        "learned from the corpus")
    t.add_argument("--vocab-size", type=int, metavar="N",
                   help="BPE vocabulary size (default 512; 256 is bytes only)")
    t.add_argument("--tasks", metavar="FILE",
                   help="held-out tasks (prompt<TAB>expected per line) answered at each evaluation; "
                        "the arithmetic and counting corpora bring their own")
    t.add_argument("--out", metavar="CKPT", help="save the model here (.safetensors)")
    t.add_argument("--resume", metavar="CKPT", help="continue training this checkpoint")
    t.add_argument("--log-json", metavar="FILE", help="write one JSON object per event")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="stream text from a checkpoint to stdout")
    g.add_argument("checkpoint", metavar="CKPT")
    g.add_argument("--prompt", default="", help="text to continue (default: empty)")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--chars", type=int, default=200, help="characters to generate (default 200)")
    length.add_argument("--tokens", type=int, help="or tokens to generate (a BPE token may be "
                                                   "several characters)")
    g.add_argument("--temperature", type=_non_negative, default=1.0, help="0 is greedy")
    g.add_argument("--top-k", type=int, default=0, help="keep the k likeliest (0: all)")
    g.add_argument("--top-p", type=_non_negative, default=1.0, help="nucleus mass (1: all)")
    g.add_argument("--seed", type=int, default=1337)

    i = sub.add_parser("info", help="describe a checkpoint")
    i.add_argument("checkpoint", metavar="CKPT")
    i.add_argument("--json", action="store_true", help="print the file's metadata as JSON")

    e = sub.add_parser("evaluate", help="score a model on a text (loss, perplexity, bits per "
                                        "character) and on task prompts (accuracy)")
    e.add_argument("checkpoint", metavar="CKPT")
    text = e.add_mutually_exclusive_group()
    text.add_argument("--text", metavar="FILE", help="a UTF-8 text file to score")
    text.add_argument("--builtin", choices=sorted(BUILTINS) + sorted(SOURCES),
                      help="a built-in corpus to score (arithmetic and counting bring their "
                           "held-out tasks)")
    e.add_argument("--tasks", metavar="FILE", help="prompt<TAB>expected per line (\\n is a newline)")
    e.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    e.add_argument("--no-download", action="store_true", help="never download a corpus")

    from playground.serve.cli import add_arguments
    add_arguments(sub.add_parser("serve", help="serve a model behind an OpenAI-compatible HTTP API"))

    from playground.export.cli import add_arguments as add_export_arguments
    add_export_arguments(sub.add_parser("export", help="write a model as a Hugging Face transformers "
                                                       "folder or an ONNX file, and verify it"))

    from playground.scale_cli import add_arguments as add_scale_arguments
    add_scale_arguments(sub.add_parser("scale", help="train a ladder of model sizes and fit a "
                                                     "scaling law L(N) = E + A·N^-α"))

    b = sub.add_parser("bench", help="run the performance benchmarks")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument("--only", metavar="NAMES", help="comma-separated subset of targets")
    b.add_argument("--quick", action="store_true", help="shorter runs (for a smoke check)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if args.command == "train":
            from playground.train_cli import run_train
            return run_train(args)
        if args.command == "generate":
            return run_generate(args)
        if args.command == "info":
            return run_info(args)
        if args.command == "serve":
            from playground.serve.cli import run_serve
            return run_serve(args)
        if args.command == "evaluate":
            from playground.evaluate_cli import run_evaluate
            return run_evaluate(args)
        if args.command == "export":
            from playground.export.cli import run_export
            return run_export(args)
        if args.command == "scale":
            from playground.scale_cli import run_scale
            return run_scale(args)
        if args.command == "bench":
            from playground.bench.run import run_bench
            return run_bench(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `generate ... | head` closed our stdout: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 2


def run_generate(args) -> int:
    from playground.engine import checkpoint
    from playground.engine import generation as sample
    from playground.engine.config import SampleConfig
    cfg = SampleConfig(max_new_chars=args.chars, max_new_tokens=args.tokens or 0,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       seed=args.seed).check()
    if args.tokens == 0:
        print("error: --tokens must be 1 or more", file=sys.stderr)
        return 2
    ckpt = checkpoint.load(args.checkpoint, with_optimizer=False)
    encoded = sample.prepare_prompt(ckpt.tokenizer, args.prompt)
    if encoded.unknown:
        print(f"warning: {encoded.message}", file=sys.stderr)
    prompt = ckpt.tokenizer.decode(encoded.ids)
    if prompt:
        sys.stdout.write(prompt)
    start = ckpt.state.get("start_char")
    for char in sample.stream(ckpt.model, ckpt.tokenizer, prompt, cfg, start):
        sys.stdout.write(char)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def run_info(args) -> int:
    from playground.engine import checkpoint
    ckpt = checkpoint.load(args.checkpoint)
    cfg = ckpt.model_config
    if args.json:
        print(json.dumps({
            "params": ckpt.model.num_params(), "model_config": cfg.to_dict(),
            "tokenizer": tokenizer_summary(ckpt.tokenizer),
            "train_config": ckpt.train_config.to_dict() if ckpt.train_config else None,
            "state": ckpt.state, "optimizer_saved": ckpt.optimizer_state is not None}, indent=2))
        return 0
    print(f"model:      {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, "
          f"block {cfg.block_size}, dropout {cfg.dropout:g}, {cfg.position} positions, "
          f"{'a' if cfg.head_bias else 'no'} head bias")
    print(f"parameters: {ckpt.model.num_params():,}")
    print(f"tokenizer:  {vocabulary_line(ckpt.tokenizer)}")
    state = ckpt.state
    if state:
        loss = state.get("loss")
        val = state.get("val_loss")
        print(f"trained:    {state.get('step', 0)} steps on {state.get('corpus', '?')!s}, "
              f"{state.get('train_seconds', 0)} s; loss {_fmt(loss)}, validation {_fmt(val)}")
        if state.get("trained_to", state.get("step")) != state.get("step"):
            print(f"kept:       the best weights, step {state['step']} of "
                  f"{state['trained_to']} trained")
    if ckpt.train_config:
        print(f"training:   {json.dumps(ckpt.train_config.to_dict())}")
    print(f"optimizer:  {'saved beside it' if ckpt.optimizer_state else 'not saved'}")
    return 0


def vocabulary_line(tokenizer) -> str:
    """The tokenizer in one line: every character of a character model; a BPE's size and
    its longest tokens."""
    if tokenizer.kind == "char":
        return f"{tokenizer.describe()}: {json.dumps(''.join(tokenizer.chars))}"
    longest = sorted(range(tokenizer.vocab_size), key=lambda i: -len(tokenizer.token_bytes(i)))[:8]
    return f"{tokenizer.describe()}; longest: " + ", ".join(repr(tokenizer.label(i)) for i in longest)


def tokenizer_summary(tokenizer) -> dict:
    """info --json: a character model's characters; a BPE's kind and size (its whole JSON
    lives in the file's metadata)."""
    if tokenizer.kind == "char":
        return tokenizer.to_dict()
    return {"type": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
            "merges": tokenizer.vocab_size - 256}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
