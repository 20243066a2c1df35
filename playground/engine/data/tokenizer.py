"""Tokenizers: text <-> ids, saved with the model.

`CharTokenizer` (the default and the book's): one id per distinct character of the corpus.
`BPETokenizer` (bpe.py): a byte-level BPE trained on the corpus; any text encodes. Both answer
the same questions, so the rest of the engine never asks which one it has: every token is
some bytes (`token_bytes`), shown to people as `label` (a byte fragment as <0xE2>), and a
stream of ids becomes text through `TextStream`, which never shows half a character.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from playground.engine.errors import ConfigError, PromptError

KINDS = ("char", "bpe")


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


class Tokenizer:
    """What every tokenizer answers. Subclasses set `kind` and implement the abstract five."""

    kind = ""
    end_of_text: Optional[int] = None   # the id that ends a text (a BPE's <|endoftext|>), if any

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode_lenient(self, text: str) -> Encoded:
        """Encode, dropping what the vocabulary cannot hold and naming it once each."""
        raise NotImplementedError

    def encode_array(self, text: str, progress: Optional[Callable[[float], None]] = None) -> np.ndarray:
        """Encode a whole corpus fast into the smallest integer type that holds the ids."""
        raise NotImplementedError

    def token_bytes(self, i: int) -> bytes:
        """The UTF-8 bytes a token stands for (a BPE token may hold part of a character)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for `info` and the window: what kind, how many tokens."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Encode text whose every character is known; raises PromptError naming the unknown."""
        encoded = self.encode_lenient(text)
        if encoded.unknown:
            raise PromptError(f"the model never saw {encoded.unknown_list()}")
        return encoded.ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of these ids; an incomplete character at the very end is left out."""
        stream = TextStream(self)
        return "".join(stream.push(int(i)) for i in ids)

    def label(self, i: int) -> str:
        """How a person sees token i: its text, with bytes that are not whole characters
        written as <0xE2>."""
        return readable(self.token_bytes(int(i)))

    @property
    def unit(self) -> str:
        """What one id is called in messages: 'characters' or 'tokens'."""
        return "characters" if self.kind == "char" else "tokens"


def readable(data: bytes) -> str:
    """Bytes as text, each byte that is not part of a whole UTF-8 character as <0xNN>."""
    out, i = [], 0
    while i < len(data):
        for width in (1, 2, 3, 4):  # the shortest valid character starting here
            try:
                out.append(data[i:i + width].decode("utf-8"))
                i += width
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append(f"<0x{data[i]:02X}>")
            i += 1
    return "".join(out)


def _bytes_as_labels(error: UnicodeDecodeError) -> tuple[str, int]:
    """A codec error handler: each byte that cannot be part of a character as <0xE2>."""
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


codecs.register_error("playground-byte-labels", _bytes_as_labels)


class TextStream:
    """Token ids in, text out, one piece per token: bytes that do not finish a character wait
    for the next token, so streaming never shows half of one. A byte sequence that can never
    become a character is shown once it is known to be broken: as U+FFFD (what a program reading
    the text expects), or with labels=True as <0xE2> per byte (what a person can make sense of,
    as the window's odds show it)."""

    def __init__(self, tokenizer: Tokenizer, labels: bool = False):
        self.tokenizer = tokenizer
        errors = "playground-byte-labels" if labels else "replace"
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)

    def push(self, i: int) -> str:
        return self._decoder.decode(self.tokenizer.token_bytes(i))

    @property
    def waiting(self) -> bool:
        """True while the last tokens hold part of a character."""
        return bool(self._decoder.getstate()[0])


class CharTokenizer(Tokenizer):
    """Maps characters to ids in sorted order, so the same text always gives the same ids."""

    kind = "char"

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
        self._bytes = [c.encode("utf-8", errors="surrogatepass") for c in chars]
        # A code-point lookup table makes encoding a 50 MB text one numpy pass.
        self._max_cp = max(ord(c) for c in chars)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode_lenient(self, text: str) -> Encoded:
        ids, unknown = [], []
        for c in text:
            i = self.stoi.get(c)
            if i is None:
                if c not in unknown:
                    unknown.append(c)
            else:
                ids.append(i)
        return Encoded(ids, tuple(unknown))

    def encode_array(self, text: str, progress: Optional[Callable[[float], None]] = None,
                     chunk: int = 1 << 20) -> np.ndarray:
        """One numpy pass a chunk at a time, so a 50 MB text needs no 4x temporaries."""
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
            if progress:
                progress(min(start + chunk, len(text)) / max(len(text), 1))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def token_bytes(self, i: int) -> bytes:
        return self._bytes[i]

    def label(self, i: int) -> str:
        return self.chars[int(i)]

    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}

    def describe(self) -> str:
        return f"characters: {self.vocab_size} distinct"

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        if not isinstance(data, dict) or data.get("type") != "char" or not isinstance(data.get("chars"), str):
            raise ConfigError("vocabulary must be an object {'type': 'char', 'chars': '...'}")
        return cls(list(data["chars"]))
