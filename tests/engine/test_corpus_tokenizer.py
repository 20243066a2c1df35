"""Corpora and the tokenizer: clear errors, the split, fast encoding."""

import numpy as np
import pytest
import torch

from playground.engine.data.corpus import (
    BUILTINS,
    build_corpus,
    builtin_text,
    check_text,
    get_batch,
    read_text_file,
    resolve_source,
)
from playground.engine.data.tokenizer import CharTokenizer, Encoded, readable
from playground.engine.errors import CorpusError, PromptError


def test_every_builtin_loads_and_the_phrase_has_13_characters():
    for name in BUILTINS:
        assert len(set(builtin_text(name))) >= 2
    assert len(set(builtin_text("phrase"))) == 13


@pytest.mark.parametrize("text,words", [
    ("", "empty"), ("   \n\t ", "only whitespace"), ("aaaa", "only one distinct character"),
    ("ab\x00cd", "NUL bytes"),
])
def test_bad_texts_are_named(text, words):
    with pytest.raises(CorpusError, match=words):
        check_text(text)


def test_bom_and_crlf_are_normalised():
    assert check_text("\ufeffab\r\ncd\r\n") == "ab\ncd\n"


def test_files_binary_non_utf8_missing_and_directory(tmp_path):
    (tmp_path / "bin.dat").write_bytes(b"\x89PNG\x00\x00data")
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match="binary"):
        read_text_file(tmp_path / "bin.dat")
    with pytest.raises(CorpusError, match="not UTF-8 text \\(bad byte at offset 3\\)"):
        read_text_file(tmp_path / "latin.txt")
    with pytest.raises(CorpusError, match="does not exist"):
        read_text_file(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="is a folder"):
        read_text_file(tmp_path)


def test_split_holds_out_the_tail_when_it_fits():
    text = "abcdefghij" * 100
    corpus = build_corpus("t", text, 0.1, 8)
    assert (corpus.n_train, corpus.n_val) == (900, 100)
    assert corpus.tokenizer.decode(corpus.val_ids().tolist()) == text[900:]


def test_short_text_trains_on_everything_without_validation():
    corpus = build_corpus("p", "to be or not to be that is the question", 0.1, 32)
    assert corpus.n_val == 0 and not corpus.has_validation and corpus.n_train == 39


def test_unknown_prompt_characters_are_reported_and_dropped():
    tok = CharTokenizer.from_text("hello world")
    enc = tok.encode_lenient("hexxo 🙂")
    assert tok.decode(enc.ids) == "heo "
    assert enc.unknown == ("x", "🙂")
    assert "'x'" in enc.message and "dropped" in enc.message
    with pytest.raises(PromptError, match="never saw 'x'"):
        tok.encode("x")


def test_encode_array_matches_encode_and_handles_astral_characters():
    text = "naïve café 🙂 e\u0301 " * 50
    tok = CharTokenizer.from_text(text)
    assert tok.encode_array(text, chunk=7).tolist() == tok.encode(text)
    assert tok.decode(tok.encode(text)) == text


def test_batches_are_windows_of_the_data():
    data = torch.arange(100, dtype=torch.uint8)
    x, y = get_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 8) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(16, 7, dtype=torch.int64))
    assert int(x[:, 0].max()) <= 100 - 9


def test_resolve_source_needs_exactly_one():
    with pytest.raises(CorpusError, match="exactly one"):
        resolve_source(builtin="phrase", text="x")
    assert resolve_source(text="abc") == ("pasted text", "abc")


def test_vocabulary_over_256_characters_encodes_to_int32():
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 2
    corpus = build_corpus("cjk", text, 0.0, 4)
    assert corpus.ids.dtype == np.int32 and corpus.tokenizer.vocab_size == 300


def test_a_50_mb_file_loads_in_under_4x_its_size(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    big = tmp_path / "big.txt"
    big.write_text(("All the world's a stage, and all the men and women merely players.\n" * 760_000)[:50_000_000])
    code = (
        "import resource, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from playground.engine.data.corpus import read_text_file, build_corpus\n"
        "base = int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024\n"
        f"text = read_text_file({str(big)!r})\n"
        "corpus = build_corpus('big', text, 0.1, 64)\n"
        "from playground.engine.events import peak_rss_mb\n"
        "peak = peak_rss_mb()  # not ru_maxrss: Linux carries pytest's over the exec\n"
        "print(peak - base, corpus.n_train + corpus.n_val)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    extra_mb, chars = out.stdout.split()
    assert int(chars) == 50_000_000
    assert float(extra_mb) < 4 * big.stat().st_size / 2**20, out.stdout + out.stderr


def test_unknown_characters_are_named_up_to_ten_then_counted():
    ten, eleven = tuple("abcdefghij"), tuple("abcdefghijk")
    assert Encoded([], ten).unknown_list() == "'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'"
    assert Encoded([], eleven).unknown_list() == Encoded([], ten).unknown_list() + " and 1 more"
    assert Encoded([], tuple("abcdefghijklmnopqrstuvwxyz")).unknown_list().endswith("'j' and 16 more")
    assert Encoded([0], ()).message == ""
    assert Encoded([], ("x", "🙂")).message == "the model never saw 'x', '🙂'; dropped from the prompt"


def test_readable_keeps_whole_characters_and_labels_each_stray_byte():
    for whole in "a\x7fé€🎉":  # 1, 1, 2, 3 and 4 bytes, each followed by a byte no character starts with
        assert readable(whole.encode("utf-8") + b"\xff") == whole + "<0xFF>"
    assert readable(b"\xff\x80a") == "<0xFF><0x80>a"
    assert readable(b"\xe2\x82\xe2\x82\xac!") == "<0xE2><0x82>€!"  # half a euro sign, then a whole one
    # the same labels from the streams' codec error handler, which gets both bytes in one error
    assert b"\xe2\x82a".decode("utf-8", errors="playground-byte-labels") == "<0xE2><0x82>a"


def test_encode_array_type_progress_and_unknown_characters():
    assert CharTokenizer([chr(0x100 + i) for i in range(256)]).encode_array("\u0100\u01ff").tolist() == [0, 255]
    assert CharTokenizer([chr(0x100 + i) for i in range(256)]).encode_array("\u0100").dtype == np.uint8
    assert CharTokenizer([chr(0x100 + i) for i in range(257)]).encode_array("\u0100").dtype == np.int32
    tok = CharTokenizer.from_text("abcdefghij")
    seen = []
    assert tok.encode_array("jihgfedcba", progress=seen.append, chunk=4).tolist() == list(range(9, -1, -1))
    assert seen == [0.4, 0.8, 1.0]
    seen.clear()
    tok.encode_array("a", progress=seen.append)
    assert seen == [1.0]
    with pytest.raises(PromptError, match=r"^characters not in the vocabulary: \['\+', 'x'\]$"):
        tok.encode_array("abc+x")  # '+' below the highest known code point, 'x' above it
    with pytest.raises(PromptError, match=r"^characters not in the vocabulary: \['\+'\]$"):
        tok.encode_array("a+b")  # below alone: a hole in the lookup table, not past its end
    with pytest.raises(PromptError, match=r"^characters not in the vocabulary: \['0', '1', '2', '3', '4', "
                                          r"'5', '6', '7', '8', '9'\]$"):
        tok.encode_array("a" + "".join(reversed("0123456789:")) + "z")  # the first ten, sorted


def test_a_character_vocabulary_is_distinct_single_characters_and_its_dict_is_checked():
    import re

    from playground.engine.errors import ConfigError
    single = "vocabulary must be a list of single characters"
    for chars, words in [([], "vocabulary is empty: the corpus has no characters"), (["ab"], single),
                         (["a", ""], single), (["a", 1], single), (["a", "b", "a"], "vocabulary has repeated characters")]:
        with pytest.raises(ConfigError, match=f"^{re.escape(words)}$"):
            CharTokenizer(chars)
    tok = CharTokenizer(["b", "a", "\ud800"])  # kept in the given order; a lone surrogate as its UTF-8-ish bytes
    assert (tok.vocab_size, tok.stoi, tok.kind) == (3, {"b": 0, "a": 1, "\ud800": 2}, "char")
    assert [tok.token_bytes(i) for i in range(3)] == [b"b", b"a", b"\xed\xa0\x80"]
    assert tok.label(2) == "\ud800" and tok.decode([1, 0]) == "ab" and tok.encode("ab") == [1, 0]
    assert tok.to_dict() == {"type": "char", "chars": "ba\ud800"} and tok.describe() == "characters: 3 distinct"
    assert CharTokenizer.from_dict(tok.to_dict()).chars == ["b", "a", "\ud800"]
    assert CharTokenizer.from_text("hello").chars == ["e", "h", "l", "o"]
    for data in ("ba", {"type": "bpe", "chars": "ba"}, {"type": "char", "chars": ["b"]}, {"type": "char"}):
        with pytest.raises(ConfigError, match="^" + re.escape("vocabulary must be an object {'type': 'char', "
                                                            "'chars': '...'}") + "$"):
            CharTokenizer.from_dict(data)


def test_a_character_above_every_known_one_is_refused_by_the_fast_encoder():
    """encode_array looks characters up in a table as long as the highest known code point;
    one beyond it (here the euro sign after 'a'-'c') is unknown, never some other id."""
    tok = CharTokenizer("abc")
    with pytest.raises(PromptError, match="€"):
        tok.encode_array("ab€c")
    assert tok.encode_array("cab").tolist() == [2, 0, 1]
