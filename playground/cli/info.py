"""`python -m playground info CKPT`: what a model file holds: its settings, size, tokenizer and
how it was trained; --json for the whole metadata."""

from __future__ import annotations

import json


def add_arguments(i) -> None:
    i.add_argument("checkpoint", metavar="CKPT")
    i.add_argument("--json", action="store_true", help="print the file's metadata as JSON")


def run(args) -> int:
    from playground.engine.model import checkpoint
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
          f"block {cfg.block_size}, dropout {cfg.dropout:g}"
          + (" (not on attention)" if cfg.dropout and not cfg.attention_dropout else "")
          + f", {cfg.position} positions, "
          f"{'a' if cfg.head_bias else 'no'} head bias"
          + (", GPT-2's tanh GELU" if cfg.activation == "gelu_tanh" else "")
          + (", tied embeddings" if cfg.tie_embeddings else "")
          + (f", rotary base {cfg.rope_base:g}" if cfg.position == "rope" and cfg.rope_base != 10000 else ""))
    if ckpt.state.get("source"):
        print(f"source:     {ckpt.state['source']}")
    print(f"parameters: {ckpt.model.num_params():,}")
    print(f"tokenizer:  {vocabulary_line(ckpt.tokenizer)}")
    state = ckpt.state
    if state:
        loss = state.get("loss")
        val = state.get("val_loss")
        # the seconds are those of every step trained (a continued run adds its own), so the steps
        # beside them are all of those too; the weights kept may be an earlier step's
        trained = state.get("trained_to", state.get("step", 0))
        print(f"trained:    {trained} steps on {state.get('corpus', '?')!s} in "
              f"{state.get('train_seconds', 0)} s; loss {_fmt(loss)}, validation {_fmt(val)} "
              f"(of the weights kept)")
        if trained != state.get("step"):
            print(f"kept:       the best weights, step {state['step']} of {trained} trained")
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
            "merges": tokenizer.merges, "end_of_text": tokenizer.end_of_text}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
