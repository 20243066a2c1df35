"""How many parameters a config builds, without torch where a formula was verified.

The window shows the count on every settings change before torch is loaded, so the count is a
fast path like the others: a formula for the configurations it was checked against (the tests
compare it with GPT(config) over generated configs), and anything else is counted by building
the model on torch's meta device, which allocates nothing.
"""

from __future__ import annotations

from playground.engine.model.fastpath import FORMULA


def count_params(config) -> int:
    if FORMULA.applies(config):
        return formula(config)
    import torch

    from playground.engine.model.gpt import GPT
    with torch.device("meta"):
        return GPT(config).num_params()


def formula(config) -> int:
    """Token embedding, positions (learned only), per block two layer norms, attention and MLP,
    a final layer norm and the head (with its bias, when it has one)."""
    C, V, T = config.n_embd, config.vocab_size, config.block_size
    norms = 2 * 2 * C
    attention = (C * 3 * C + 3 * C) + (C * C + C)
    mlp = (C * 4 * C + 4 * C) + (4 * C * C + C)
    positions = T * C if config.position == "learned" else 0
    head = 0 if config.tie_embeddings else C * V
    return V * C + positions + config.n_layer * (norms + attention + mlp) + 2 * C + head + \
        (V if config.head_bias else 0)
