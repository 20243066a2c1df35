"""The command line: `gpt-playground COMMAND` (or `python -m playground COMMAND`), one module per
command (train, generate, info, finetune, dpo, evaluate, serve, export, scale, bench), all over the same
engine as the window (whose command is `gpt-playground-window`).

Human-readable lines and progress go to stderr; generated text and reports go to stdout.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Optional, Sequence

from playground.cli.common import Parser
from playground.engine.errors import PlaygroundError

COMMANDS = {  # name: what it does (its module is playground.cli.NAME)
    "train": "train a model (from a preset, a corpus, or a checkpoint)",
    "generate": "stream text from a checkpoint to stdout",
    "info": "describe a checkpoint",
    "finetune": "adapt a model (ours, or a GPT-2 or Starcoder2 folder) to new text, fully or with LoRA",
    "dpo": "tune a model by preference (DPO) on pairs of completions, one chosen over the other",
    "evaluate": "score a model on a text (loss, perplexity, bits per character) and on task prompts (accuracy)",
    "serve": "serve a model behind an OpenAI-compatible HTTP API",
    "export": "write a model as a Hugging Face transformers folder, an ONNX file or a GGUF file "
              "(llama.cpp, Ollama), and verify it",
    "inspect": "look inside a model: the logit lens, induction heads, the embedding map, where a text surprises it",
    "scale": "train a ladder of model sizes and fit a scaling law L(N) = E + A·N^-α",
    "bench": "run the performance benchmarks",
}


def _module(name: str):
    return importlib.import_module(f"playground.cli.{name}")


def program_name() -> str:
    """How the user called us: `gpt-playground` (the installed command) or `python -m playground`."""
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "gpt-playground" if called.startswith("gpt-playground") else "python -m playground"


def build_parser() -> Parser:
    parser = Parser(prog=program_name(),
                    description="Train a small GPT on your CPU (characters or subwords), then generate from it, "
                                "evaluate it, fine-tune it, serve it behind an OpenAI-compatible API, export it "
                                "(transformers, ONNX, GGUF for llama.cpp and Ollama) and fit scaling laws. "
                                "The window: gpt-playground-window.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, words in COMMANDS.items():
        _module(name).add_arguments(sub.add_parser(name, help=words))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return _module(args.command).run(args)
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


__all__ = ["build_parser", "main"]
