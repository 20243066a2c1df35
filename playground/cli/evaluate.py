"""`python -m playground evaluate CKPT`: a model's loss, perplexity and bits per character on a
text, and its accuracy on task prompts, in words on stdout and as JSON on request."""

from __future__ import annotations

import json
from pathlib import Path

from playground.cli.common import add_corpus_flags
from playground.engine.errors import ConfigError
from playground.engine.model import checkpoint


def add_arguments(e) -> None:
    e.add_argument("checkpoint", metavar="CKPT")
    add_corpus_flags(e, "a built-in corpus to score (arithmetic and counting bring their held-out tasks)",
                     text_flag=False, file_flag="--text")
    e.add_argument("--tasks", metavar="FILE", help="prompt<TAB>expected per line (\\n is a newline)")
    e.add_argument("--json", metavar="FILE", help="also write the figures as JSON")


def run(args) -> int:
    from playground.engine.analysis.evaluation import score_tasks, score_text
    from playground.engine.data.corpus import resolve_source
    from playground.engine.data.tasks import builtin_tasks, read_tasks
    if args.text is None and args.builtin is None and args.tasks is None:
        raise ConfigError("give something to score: --text FILE or --builtin NAME, and/or --tasks FILE")
    import torch

    from playground.engine.training.threads import threads_for, usable_cores
    torch.set_num_threads(threads_for(usable_cores()))  # batches of windows: every core not kept busy
    ckpt = checkpoint.load(args.checkpoint, with_optimizer=False)
    model, tokenizer = ckpt.model.eval(), ckpt.tokenizer
    result: dict = {}
    if args.text is not None or args.builtin is not None:
        name, text = resolve_source(builtin=args.builtin, path=args.text,
                                    allow_download=not args.no_download)
        score = score_text(model, tokenizer, text)
        result.update({k: v for k, v in score.to_dict().items() if k != "unknown"})
        unit = tokenizer.unit
        counted = f"{score.characters:,} characters" if unit == "characters" else \
            f"{score.tokens:,} tokens ({score.characters:,} characters)"
        print(f"text:       {name}: {counted} predicted")
        if score.unknown_characters:
            shown = ", ".join(repr(c) for c in score.unknown[:10])
            print(f"            {score.unknown_characters:,} characters the model never saw were left "
                  f"out of the score ({shown})")
        print(f"loss:       {score.loss:.4f} nats per {unit[:-1]}; perplexity {score.perplexity:.3f}; "
              f"{score.bits_per_char:.4f} bits per character")
    tasks = read_tasks(args.tasks) if args.tasks else builtin_tasks(args.builtin or "")
    if tasks:
        found = score_tasks(model, tokenizer, list(tasks), ckpt.state.get("start_char"))
        result["tasks"] = found.to_dict()
        print(f"tasks:      {found.correct:,} of {found.total:,} answered ({found.accuracy:.1%})")
        for wrong in found.failures:
            print(f"  wrong:    {wrong.prompt!r} -> {wrong.got!r} (expected {wrong.expected!r})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
