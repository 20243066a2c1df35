"""`python -m playground inspect CKPT`: look inside a model (the logit lens, induction heads,
the embedding map, where a text surprises it), in words on stdout and as JSON on request."""

from __future__ import annotations

import json
from pathlib import Path

from playground.engine.errors import ConfigError

SHOWN = 10   # surprising places and extreme tokens listed in words (the JSON has them all)


def add_arguments(i) -> None:
    i.add_argument("checkpoint", metavar="CKPT")
    i.add_argument("--prompt", metavar="TEXT", help="the text to read (--lens, --surprise)")
    what = i.add_mutually_exclusive_group(required=True)
    what.add_argument("--lens", action="store_true",
                      help="the logit lens: what each layer would predict at each position of the prompt")
    what.add_argument("--induction", action="store_true",
                      help="each head's induction score on a random sequence repeated twice, and the "
                           "loss on each half")
    what.add_argument("--embeddings", action="store_true",
                      help="token and learned position embeddings projected to 2-D (PCA)")
    what.add_argument("--surprise", action="store_true",
                      help="the loss on each token of the prompt, its top candidates, the most surprising places")
    i.add_argument("--probe-length", type=int, metavar="N",
                   help="--induction: tokens in each half of the probe (default: 32, or fewer to fit the block)")
    i.add_argument("--seed", type=int, default=0, help="--induction: the probe's seed (default 0)")
    i.add_argument("--json", metavar="FILE", help="also write the figures as JSON")


def run(args) -> int:
    from playground.engine.analysis import interpret
    from playground.engine.model import checkpoint
    if (args.lens or args.surprise) and not args.prompt:
        raise ConfigError(f"--{'lens' if args.lens else 'surprise'} reads a text: give it with --prompt TEXT")
    if args.probe_length is not None and args.probe_length < 2:
        raise ConfigError("--probe-length must be 2 or more")
    ckpt = checkpoint.load(args.checkpoint, with_optimizer=False)
    model, tokenizer = ckpt.model.eval(), ckpt.tokenizer
    if args.lens:
        found = interpret.logit_lens(model, tokenizer, args.prompt)
        show_lens(found)
    elif args.induction:
        found = interpret.induction(model, tokenizer, args.probe_length, seed=args.seed)
        show_induction(found)
    elif args.embeddings:
        found = interpret.embedding_map(model, tokenizer)
        show_embeddings(found)
    else:
        found = interpret.surprise(model, tokenizer, args.prompt)
        show_surprise(found, tokenizer.unit)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(found.to_dict(), indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    return 0


def _cell(token: str, p: float) -> str:
    return f"{token!r} {p:4.0%}"


def show_lens(lens) -> None:
    if lens.dropped:
        print(f"(the first {lens.dropped} tokens of the prompt did not fit the block and were left out)")
    width = max(12, *(len(_cell(t, 1.0)) for row in lens.top for t in row))
    print("each cell: the likeliest next token read after that layer, and its probability; "
          "last column: the token that comes next, and its probability at the output")
    print(f"{'position':<16}" + "".join(f"{name:<{width + 2}}" for name in lens.layers) + "next")
    for t, token in enumerate(lens.tokens):
        cells = "".join(f"{_cell(lens.top[layer][t], lens.top_prob[layer][t]):<{width + 2}}"
                        for layer in range(len(lens.layers)))
        following = lens.next_prob[-1][t]
        after = "" if following is None else _cell(lens.tokens[t + 1], following)
        print(f"{t:>3} {token!r:<12}" + cells + after)


def show_induction(found) -> None:
    layer, head, score = found.best()
    print(f"probe: {found.probe_length} random tokens, then the same again (1 = attends exactly to "
          f"the token after its previous occurrence)")
    for row_layer, row in enumerate(found.scores):
        print(f"layer {row_layer + 1}: " + "  ".join(f"head {h + 1} {s:.3f}" for h, s in enumerate(row)))
    print(f"strongest: layer {layer + 1}, head {head + 1}, score {score:.3f}")
    print(f"loss on the first half:  {found.loss_first_half:.4f}")
    print(f"loss on the second half: {found.loss_second_half:.4f} "
          f"({found.loss_first_half - found.loss_second_half:+.4f} lower: what copying earns)")


def show_embeddings(found) -> None:
    tokens = found.tokens
    print(f"token embeddings: {len(found.labels)} tokens; the two axes hold "
          f"{tokens.explained[0]:.1%} and {tokens.explained[1]:.1%} of their variance")
    for axis in range(2):
        order = sorted(range(len(found.labels)), key=lambda i: tokens.points[i][axis])
        low = " ".join(repr(found.labels[i]) for i in order[:SHOWN // 2])
        high = " ".join(repr(found.labels[i]) for i in order[-(SHOWN // 2):])
        print(f"  axis {axis + 1}: low end {low}  |  high end {high}")
    if found.positions is None:
        print(f"position embeddings: none ({found.no_positions})")
    else:
        pos = found.positions
        print(f"position embeddings: {len(pos.points)} positions; the two axes hold "
              f"{pos.explained[0]:.1%} and {pos.explained[1]:.1%} of their variance")


def show_surprise(found, unit: str) -> None:
    print(f"mean loss {found.mean_loss:.4f} nats per {unit[:-1]} over {len(found.losses) - 1} {unit}")
    print("most surprising (loss in nats; what it expected instead):")
    for i in found.worst(SHOWN):
        before = "".join(found.tokens[max(0, i - 12):i])
        expected = ", ".join(_cell(t, p) for t, p in found.candidates[i][:3])
        print(f"  {i:>5} {found.losses[i]:6.3f}  ...{before!r} -> {found.tokens[i]!r}   expected {expected}")
