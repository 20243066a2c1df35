"""The exported tokenizers give our ids and our text: characters (spaces, newlines, unknown
characters dropped) and byte-level BPE (any Unicode), opened by AutoTokenizer alone."""

import json

import pytest

from playground.engine.data.bpe import BPETokenizer
from playground.engine.data.tokenizer import CharTokenizer
from playground.export.hf_tokenizer import char_tokenizer, write_tokenizer
from tests.export.conftest import BPE_TEXT

transformers = pytest.importorskip("transformers")
VOCAB = "\n\t !,.abcdeo😀é\\]^-[" + '"'


def auto(tokenizer, folder, max_length=None):
    folder.mkdir()
    write_tokenizer(tokenizer, folder, max_length)
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("text", ["a b  c\n\n", "\tdecode, a.b!\n 😀é", "]^-[\\\"", " ", "\n"])
def test_character_tokenizer_round_trips(tmp_path, text):
    ours = CharTokenizer(list(VOCAB))
    theirs = auto(ours, tmp_path / "tok", 32)
    ids = theirs.encode(text, add_special_tokens=False)
    assert ids == ours.encode(text)
    assert theirs.decode(ids) == text
    assert theirs.model_max_length == 32


def test_unknown_characters_are_dropped_without_new_ids(tmp_path):
    ours = CharTokenizer(list(VOCAB))
    theirs = auto(ours, tmp_path / "tok")
    text = "aXb☃ cZ\n"  # X, ☃ and Z are not in the vocabulary
    ids = theirs.encode(text, add_special_tokens=False)
    assert ids == ours.encode_lenient(text).ids == ours.encode("ab c\n")
    assert len(theirs) == ours.vocab_size == len(VOCAB)
    assert char_tokenizer(ours.chars).encode("XYZ").ids == []


def test_character_vocabulary_keeps_our_id_order(tmp_path):
    ours = CharTokenizer(list("zyx a"))  # not sorted: ids follow the list
    auto(ours, tmp_path / "tok")
    vocab = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["model"]["vocab"]
    assert vocab == {"z": 0, "y": 1, "x": 2, " ": 3, "a": 4}


def test_bpe_tokenizer_round_trips_unicode(tmp_path):
    ours = BPETokenizer.train(BPE_TEXT, 300)
    theirs = auto(ours, tmp_path / "tok")
    for text in ["Café naïve résumé 😀", "日本語のテキスト\n\n  two  spaces", "é", "😀😀 x"]:
        ids = theirs.encode(text, add_special_tokens=False)
        assert ids == ours.encode(text)
        assert theirs.decode(ids) == text
