"""Our tokenizers as Hugging Face `tokenizers` JSON, which AutoTokenizer opens with no code.

A character model becomes a WordLevel vocabulary over its characters, in our id order: a
normalizer deletes every character outside it (as our prompts drop them: no unknown token is
added), the pre-tokenizer cuts the text into single characters, and the decoder joins tokens
with nothing between them. A BPE model already is such a JSON and is written as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from playground.engine.data.tokenizer import Tokenizer
from playground.export.report import ExportError


def tokenizer_json(tokenizer: Tokenizer) -> str:
    """The tokenizer as the JSON of a `tokenizers.Tokenizer`."""
    if tokenizer.kind == "bpe":
        return tokenizer.tok.to_str()
    if tokenizer.kind != "char":
        raise ExportError(f"cannot export a {tokenizer.kind!r} tokenizer: only characters and BPE")
    return char_tokenizer(tokenizer.chars).to_str()


def char_tokenizer(chars: list[str]):
    """A `tokenizers.Tokenizer` that gives our ids for our characters and drops the others."""
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
    if any(0xD800 <= ord(c) <= 0xDFFF for c in chars):
        raise ExportError("the vocabulary holds a lone surrogate (half of a UTF-16 pair), which "
                          "a tokenizers JSON cannot hold")
    tok = HFTokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}))
    # every character by code point (\x{...}), so none can act as regex syntax
    known = "".join(f"\\x{{{ord(c):X}}}" for c in chars)
    tok.normalizer = normalizers.Replace(Regex(f"[^{known}]"), "")
    # the tokenizers regex (Oniguruma): "." stops at newlines, [\s\S] takes any character
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tok


def write_tokenizer(tokenizer: Tokenizer, folder: Path, max_length: Optional[int]) -> list[str]:
    """tokenizer.json and the tokenizer_config.json that points AutoTokenizer at it; returns
    the file names. max_length: the longest input the model takes (None: no limit)."""
    (folder / "tokenizer.json").write_text(tokenizer_json(tokenizer), encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast",
              # the default "clean up" would glue " ." into "." when decoding
              "clean_up_tokenization_spaces": False}
    if max_length is not None:
        config["model_max_length"] = max_length
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return ["tokenizer.json", "tokenizer_config.json"]
