"""Subword tokens: a byte-level BPE trained on the corpus with Hugging Face `tokenizers`.

GPT-2's recipe: the text is split into words by the ByteLevel pre-tokenizer (its regex, no
prefix space), every byte is a token from the start (so any text encodes: there are no unknown
characters), and the commonest neighbouring pairs are merged until the vocabulary is full. Its
last id is GPT-2's end-of-text token, `<|endoftext|>`: a corpus that separates documents with it
teaches the model where a text ends, and llama.cpp, Ollama and transformers stop there (a
vocabulary without one makes llama.cpp take token 11 as the end). It stands for no text. The
trained tokenizer travels inside the model file as its JSON; files from before the end-of-text
token open as they are.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

import numpy as np

from playground.engine.config import MAX_BPE_VOCAB as MAX_VOCAB
from playground.engine.config import MIN_BPE_VOCAB as MIN_VOCAB
from playground.engine.data.tokenizer import Encoded, Tokenizer
from playground.engine.errors import ConfigError

DEFAULT_VOCAB = 512      # about 1 MB of text wants 512-1024
END_OF_TEXT = "<|endoftext|>"   # GPT-2's spelling, which llama.cpp recognises by name
# A corpus is encoded in pieces (in parallel) cut where the pre-tokenizer always cuts: at a
# newline between two non-space characters, which is a word of its own either way.
_CUT = re.compile(r"(?<=\S)\n(?=\S)")
PIECE_CHARS = 1 << 18


def byte_alphabet() -> dict[str, int]:
    """The printable stand-in for each byte that byte-level BPE writes in its vocabulary
    (GPT-2's table): printable Latin-1 bytes stand for themselves, the others are shifted
    past 255 in order. Maps the stand-in character back to its byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


BYTE_OF = byte_alphabet()


class BPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, tok):
        """tok: a tokenizers.Tokenizer with a BPE model and ByteLevel pre-tokenizer/decoder."""
        self.tok = tok
        size = tok.get_vocab_size()
        # special tokens (end-of-text) stand for no bytes, as tokenizers' decode skips them
        self.special = {i: t.content for i, t in tok.get_added_tokens_decoder().items() if t.special}
        self._bytes: list[bytes] = []
        for i in range(size):
            piece = tok.id_to_token(i)
            if i in self.special:
                self._bytes.append(b"")
                continue
            if piece is None or any(c not in BYTE_OF for c in piece):
                raise ConfigError(f"BPE token {i} ({piece!r}) is not made of byte-level symbols")
            self._bytes.append(bytes(BYTE_OF[c] for c in piece))

    @classmethod
    def train(cls, text: str, vocab_size: int = DEFAULT_VOCAB) -> "BPETokenizer":
        """Learn merges from text until vocab_size tokens, the end-of-text token included
        (fewer when the text runs out of pairs seen at least twice; 257 for 256, the bytes
        alone)."""
        from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
        from tokenizers import Tokenizer as HFTokenizer
        if not isinstance(vocab_size, int) or not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
            raise ConfigError(f"BPE vocabulary size {vocab_size!r} is out of range: use "
                              f"{MIN_VOCAB} to {MAX_VOCAB:,}")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=max(vocab_size - 1, 256), min_frequency=2, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=[])
        tok.train_from_iterator(_pieces(text), trainer, length=len(text) // PIECE_CHARS + 1)
        # after training, so it takes the last id (as in GPT-2) and the merges are the text's
        tok.add_special_tokens([AddedToken(END_OF_TEXT, special=True, normalized=False)])
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    def encode_lenient(self, text: str) -> Encoded:
        # encode_batch, not encode: the same ids, and it lets go of Python's lock while it works,
        # so a server tokenising a long prompt on a thread keeps streaming to the others
        return Encoded(self.tok.encode_batch([text])[0].ids, ())

    def encode_array(self, text: str, progress: Optional[Callable[[float], None]] = None,
                     piece_chars: int = PIECE_CHARS) -> np.ndarray:
        """In pieces, several at once on all cores; the same ids as encoding the whole."""
        dtype = np.uint8 if self.vocab_size <= 256 else np.int32
        pieces = list(_pieces(text, piece_chars))
        out: list[np.ndarray] = []
        group = 16  # pieces per parallel call: progress between calls
        for start in range(0, len(pieces), group):
            for enc in self.tok.encode_batch(pieces[start:start + group]):
                out.append(np.asarray(enc.ids, dtype=dtype))
            if progress:
                progress(min(start + group, len(pieces)) / len(pieces))
        return np.concatenate(out) if out else np.empty(0, dtype=dtype)

    def token_bytes(self, i: int) -> bytes:
        return self._bytes[i]

    @property
    def end_of_text(self) -> Optional[int]:
        ids = [i for i, content in self.special.items() if content == END_OF_TEXT]
        return ids[0] if ids else None

    @property
    def merges(self) -> int:
        return self.tok.get_vocab_size() - 256 - len(self.special)

    @classmethod
    def padded(cls, tokenizer: "BPETokenizer", size: int) -> "BPETokenizer":
        """The same tokenizer for a model whose embedding has `size` rows, more than it has
        tokens (a vocabulary padded to a round number): the extra ids stand for no bytes."""
        out = cls.__new__(cls)
        out.tok, out.special = tokenizer.tok, tokenizer.special
        out._bytes = tokenizer._bytes[: len(tokenizer._bytes)] + [b""] * (size - tokenizer.vocab_size)
        return out

    def to_dict(self) -> dict:
        padded = {"pad_to": self.vocab_size} if self.vocab_size > self.tok.get_vocab_size() else {}
        return {"type": "bpe", "json": self.tok.to_str(), **padded}

    def describe(self) -> str:
        end = ", end-of-text" if self.end_of_text is not None else ""
        return f"byte-level BPE: {self.vocab_size} tokens ({self.merges} merges{end})"

    @classmethod
    def from_dict(cls, data: dict) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer
        raw = data.get("json") if isinstance(data, dict) else None
        if not isinstance(raw, str):
            raise ConfigError("a BPE tokenizer must be an object {'type': 'bpe', 'json': '...'}")
        try:
            tok = HFTokenizer.from_str(raw)
        except Exception as exc:  # tokenizers raises its own exception type
            raise ConfigError(f"the BPE tokenizer is damaged: {exc}") from None
        kinds = (type(tok.model).__name__, type(tok.pre_tokenizer).__name__, type(tok.decoder).__name__)
        if kinds != ("BPE", "ByteLevel", "ByteLevel"):
            raise ConfigError(f"the tokenizer is not a byte-level BPE ({', '.join(kinds)})")
        pad_to = data.get("pad_to")
        if pad_to is not None:
            if not isinstance(pad_to, int) or not tok.get_vocab_size() <= pad_to <= MAX_VOCAB * 4:
                raise ConfigError(f"the BPE tokenizer's padding {pad_to!r} is not a size")
            return cls.padded(cls(tok), pad_to)
        return cls(tok)


def _pieces(text: str, size: int = PIECE_CHARS):
    """The text in pieces of about PIECE_CHARS, cut only where the pre-tokenizer cuts anyway,
    so encoding the pieces gives exactly the ids of encoding the whole."""
    start = 0
    while len(text) - start > size:
        cut = _CUT.search(text, start + size)
        if cut is None:
            break
        yield text[start:cut.end()]
        start = cut.end()
    if start < len(text) or not text:
        yield text[start:]
