"""Character-level tokenizer: one id per distinct character of the corpus, saved with the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from playground.engine.errors import ConfigError, PromptError


@dataclass(frozen=True)
class Encoded:
    """A prompt after encoding: the ids, and which characters the model never saw (dropped)."""

    ids: list[int]
    unknown: tuple[str, ...]

    def unknown_list(self) -> str:
        """The unknown characters in words: "'Q', 'X' and 3 more"."""
        shown = ", ".join(repr(c) for c in self.unknown[:10])
        return shown + (f" and {len(self.unknown) - 10} more" if len(self.unknown) > 10 else "")

    @property
    def message(self) -> str:
        """Plain words about the dropped characters, or '' when every character was known."""
        if not self.unknown:
            return ""
        return f"the model never saw {self.unknown_list()}; dropped from the prompt"


class CharTokenizer:
    """Maps characters to ids in sorted order, so the same text always gives the same ids."""

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if not chars:
            raise ConfigError("vocabulary is empty: the corpus has no characters")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ConfigError("vocabulary must be a list of single characters")
        if len(set(chars)) != len(chars):
            raise ConfigError("vocabulary has repeated characters")
        self.chars: list[str] = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        # A code-point lookup table makes encoding a 50 MB text one numpy pass.
        self._max_cp = max(ord(c) for c in chars)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Encode text whose every character is known; raises PromptError naming the unknown."""
        encoded = self.encode_lenient(text)
        if encoded.unknown:
            raise PromptError(f"the model never saw {encoded.unknown_list()}")
        return encoded.ids

    def encode_lenient(self, text: str) -> Encoded:
        """Encode, dropping characters outside the vocabulary and reporting them once each."""
        ids, unknown = [], []
        for c in text:
            i = self.stoi.get(c)
            if i is None:
                if c not in unknown:
                    unknown.append(c)
            else:
                ids.append(i)
        return Encoded(ids, tuple(unknown))

    def encode_array(self, text: str, chunk: int = 1 << 20) -> np.ndarray:
        """Encode a whole corpus fast, a chunk at a time so a 50 MB text needs no 4x temporaries."""
        dtype = np.uint8 if self.vocab_size <= 256 else np.int32
        table = np.full(self._max_cp + 1, -1, dtype=np.int32)
        for i, c in enumerate(self.chars):
            table[ord(c)] = i
        out = np.empty(len(text), dtype=dtype)
        for start in range(0, len(text), chunk):
            piece = text[start:start + chunk]
            codes = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)
            inside = codes <= self._max_cp
            ids = np.where(inside, table[np.minimum(codes, self._max_cp)], -1)
            if ids.size and int(ids.min()) < 0:
                missing = sorted({c for c in piece if c not in self.stoi})[:10]
                raise PromptError(f"characters not in the vocabulary: {missing}")
            out[start:start + len(piece)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        if not isinstance(data, dict) or data.get("type") != "char" or not isinstance(data.get("chars"), str):
            raise ConfigError("vocabulary must be an object {'type': 'char', 'chars': '...'}")
        return cls(list(data["chars"]))
