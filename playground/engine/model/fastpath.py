"""What a fast path was verified for: an allow-list over every ModelConfig field.

Each fast path (the flat AdamW, the cached decoding step, the parameter-count formula) states the values of every model setting it was checked against the
plain model for. A setting it does not name, such as a field added to ModelConfig later, makes it
refuse, so a new model option sends training and decoding down the plain path instead of a
silently wrong one. tests/engine/test_fast_paths.py holds each one to the model over generated
configs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ANY = "any value its own checks accept"


@dataclass(frozen=True)
class Verified:
    name: str                           # how logs and messages call the fast path
    values: dict[str, Any]              # ModelConfig field -> a set of values, or ANY
    devices: tuple[str, ...] = ("cpu",)

    def refusal(self, config: Any, device: Any = "cpu") -> str:
        """Why this fast path must not run this config on this device; '' when it may."""
        names = [f.name for f in dataclasses.fields(config)]
        for name in names:  # a setting it never heard of comes first: it is the likely news
            if name not in self.values:
                return f"{self.name} was not verified for the model setting {name!r}"
        for name in names:
            allowed, value = self.values[name], getattr(config, name)
            if allowed is not ANY and value not in allowed:
                return f"{self.name} was not verified for {name} = {value!r}"
        kind = getattr(device, "type", device)
        if kind not in self.devices:
            return f"{self.name} was not verified on {kind}"
        return ""

    def applies(self, config: Any, device: Any = "cpu") -> bool:
        return not self.refusal(config, device)


def check_same_parameters(name: str, held: list, model: Any) -> None:
    """Raise unless `held` is exactly the model's parameters, each once: a fast path that
    gathers weights by hand must not miss one (it would never train) or hold a stranger."""
    mine = [id(p) for p in held]
    theirs = [id(p) for p in model.parameters()]
    if len(mine) != len(set(mine)) or set(mine) != set(theirs):
        raise ValueError(f"{name} does not hold exactly the model's parameters "
                         f"({len(set(mine))} of its own, {len(theirs)} in the model)")


# -- the table: every fast path and what it was verified for ---------------------------------
# The cached decoding step (decoding.py): both position schemes; dropout is off when decoding.
# A setting it does not name sends decoding through GPT.forward with each sequence's own cache.
CACHED_STEP = Verified("the cached decoding step", {
    "vocab_size": ANY, "n_layer": ANY, "n_head": ANY, "n_embd": ANY, "block_size": ANY,
    "dropout": ANY, "attention_dropout": ANY, "position": {"learned", "rope"}, "head_bias": {True, False},
    "activation": {"gelu", "gelu_tanh"}, "tie_embeddings": {False, True}, "rope_base": ANY}, devices=("cpu",))
# The flat AdamW (flat_adamw.py): elementwise over whatever parameters the model holds; the
# fused kernel was checked on the CPU.
FLAT_ADAMW = Verified("the flat AdamW", {
    "vocab_size": ANY, "n_layer": ANY, "n_head": ANY, "n_embd": ANY, "block_size": ANY,
    "dropout": ANY, "attention_dropout": ANY, "position": {"learned", "rope"}, "head_bias": {True, False},
    "activation": ANY, "tie_embeddings": {False, True}, "rope_base": ANY}, devices=("cpu",))
# The parameter count without torch (param_count.py), for the window's live figure.
FORMULA = Verified("the parameter-count formula", {
    "vocab_size": ANY, "n_layer": ANY, "n_head": ANY, "n_embd": ANY, "block_size": ANY,
    "dropout": ANY, "attention_dropout": ANY, "position": {"learned", "rope"}, "head_bias": {True, False},
    "activation": ANY, "tie_embeddings": {False, True}, "rope_base": ANY}, devices=("cpu",))
FAST_PATHS = (CACHED_STEP, FLAT_ADAMW, FORMULA)
