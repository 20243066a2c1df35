"""`python -m playground generate CKPT`: stream text from a model to stdout, as it is written."""

from __future__ import annotations

import sys

from playground.cli.common import number


def add_arguments(g) -> None:
    g.add_argument("checkpoint", metavar="CKPT")
    g.add_argument("--prompt", default="", help="text to continue (default: empty)")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--chars", type=int, default=200, help="characters to generate (default 200)")
    length.add_argument("--tokens", type=int, help="or tokens to generate (a BPE token may be "
                                                   "several characters)")
    g.add_argument("--temperature", type=number, default=1.0, help="0 is greedy")
    g.add_argument("--top-k", type=int, default=0, help="keep the k likeliest (0: all)")
    g.add_argument("--top-p", type=number, default=1.0, help="nucleus mass (1: all)")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--int8", action="store_true",
                   help="8-bit weights for each new token (x86 CPUs): 1.4x faster on a model of GPT-2 "
                        "small's size, log-probabilities within about 0.1 of float32's")


def run(args) -> int:
    from playground.engine.config import SampleConfig
    from playground.engine.model import checkpoint
    from playground.engine.model.generation import prepare_prompt, stream, weights_refusal
    cfg = SampleConfig(max_new_chars=args.chars, max_new_tokens=args.tokens or 0,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       seed=args.seed).check()
    if args.tokens == 0:
        print("error: --tokens must be 1 or more", file=sys.stderr)
        return 2
    import torch
    torch.set_num_threads(1)  # one text, a token at a time: one thread is fastest (the threads bench)
    ckpt = checkpoint.load(args.checkpoint, with_optimizer=False)
    ckpt.model.requires_grad_(False)  # only generates: the cached step may keep copies (decoding.py)
    weights = "int8" if args.int8 else "float32"
    refusal = weights_refusal(ckpt.model, weights)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    encoded = prepare_prompt(ckpt.tokenizer, args.prompt)
    if encoded.unknown:
        print(f"warning: {encoded.message}", file=sys.stderr)
    prompt = ckpt.tokenizer.decode(encoded.ids)
    if prompt:
        sys.stdout.write(prompt)
    for text in stream(ckpt.model, ckpt.tokenizer, prompt, cfg, ckpt.state.get("start_char"), weights):
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
