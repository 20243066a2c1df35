"""Built-in corpora made by code at load time rather than read from a file: the same text on
every machine from a fixed seed, and nothing to ship."""

from __future__ import annotations

import random
import string


def repeat_text(lines: int = 8000, shortest: int = 4, longest: int = 30, seed: int = 0) -> str:
    """Lines of random lowercase letters written twice ("qzkqzk"): the first half cannot be
    predicted, the second only by finding the earlier copy and reading what followed it,
    which is what an induction head does. The lengths vary, so no fixed offset copies."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        run = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(shortest, longest)))
        out.append(run + run + "\n")
    return "".join(out)


GENERATORS = {"repeat": repeat_text}   # built-in name -> the function that writes it
