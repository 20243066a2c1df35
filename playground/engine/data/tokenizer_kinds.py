"""A tokenizer of either kind: a new one made for a text (characters, or a BPE trained on it), or
the one a model file describes. Apart from corpus.py, so opening a model file reads only this."""

from __future__ import annotations

from typing import Optional

from playground.engine.data.tokenizer import KINDS, CharTokenizer, Tokenizer
from playground.engine.errors import ConfigError, CorpusError


def make_tokenizer(kind: str, text: str, n_train_chars: Optional[int] = None,
                   vocab_size: int = 512) -> Tokenizer:
    """A new tokenizer of this kind for this text ("char": all its characters; "bpe": trained
    on its first n_train_chars characters)."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "bpe":
        from playground.engine.data.bpe import BPETokenizer
        return BPETokenizer.train(text[:n_train_chars or len(text)], vocab_size)
    raise CorpusError(f"tokenizer {kind!r} is unknown: use 'char' or 'bpe'")


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """The tokenizer a model file describes, of whichever kind."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "bpe":
        from playground.engine.data.bpe import BPETokenizer
        return BPETokenizer.from_dict(data)
    if kind == "char":
        return CharTokenizer.from_dict(data)
    raise ConfigError(f"tokenizer type {kind!r} is unknown: use one of {', '.join(KINDS)}")
