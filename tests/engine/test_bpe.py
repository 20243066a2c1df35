"""Subword tokens: the byte-level BPE, text streams, bits per character, BPE model files."""

import json
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.engine.config import ModelConfig, SampleConfig, TrainConfig
from playground.engine.data.bpe import BYTE_OF, BPETokenizer, byte_alphabet
from playground.engine.data.corpus import build_corpus, builtin_text
from playground.engine.data.tokenizer import CharTokenizer, TextStream, readable
from playground.engine.data.tokenizer_kinds import tokenizer_from_dict
from playground.engine.errors import CheckpointError, ConfigError
from playground.engine.model import checkpoint
from playground.engine.model import generation as sample
from playground.engine.model.gpt import GPT
from playground.engine.training.trainer import Trainer

FABLE = builtin_text("fable")
TEXTS = st.lists(st.sampled_from(list("ab cdé\n\t🎉ü.,'xyz ") + ["  ", "\n\n", "the ", "ing"]),
                 max_size=80).map("".join)


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(FABLE, 400)


def test_the_byte_table_is_the_one_byte_level_bpe_writes():
    from tokenizers import pre_tokenizers
    assert set(BYTE_OF) == set(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(BYTE_OF.values()) == list(range(256))


def test_the_byte_table_is_gpt2s_by_hand_and_reads_what_byte_level_writes():
    from tokenizers import pre_tokenizers
    table = byte_alphabet()  # called here: BYTE_OF was built at import
    assert table == BYTE_OF and len(table) == 256
    # printable Latin-1 bytes stand for themselves ...
    assert all(table[chr(b)] == b for b in [*range(33, 127), *range(161, 173), *range(174, 256)])
    # ... and the 68 others, in byte order, for the characters from U+0100 on
    assert [table[chr(256 + k)] for k in range(68)] == [*range(0, 33), *range(127, 161), 173]
    assert (table["Ġ"], table["Ċ"], table["ł"], table["Ń"]) == (32, 10, 160, 173)
    text = "".join(chr(c) for c in range(1, 0x800, 3)) + " é🎉\n"
    (word, _), = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    assert bytes(table[c] for c in word) == text.encode("utf-8")


def test_training_learns_merges_up_to_the_size_and_every_token_is_bytes(bpe):
    assert 256 < bpe.vocab_size <= 400
    assert all(bpe.token_bytes(i) == bytes([i_b]) for i_b, i in
               [(b, bpe.tok.token_to_id("".join(k for k, v in BYTE_OF.items() if v == b))) for b in range(256)])
    # the corpus's common words became single tokens
    assert len(bpe.encode(" the")) == 1
    assert len(bpe.encode_lenient(FABLE).ids) < len(FABLE) / 2


@settings(max_examples=60, deadline=None)
@given(text=TEXTS)
def test_any_text_round_trips_and_pieces_encode_like_the_whole(bpe, text):
    ids = bpe.encode(text)  # nothing is unknown to a byte-level BPE
    assert bpe.decode(ids) == text
    assert bpe.encode_array(text, piece_chars=7).tolist() == ids
    # streamed token by token, the text arrives whole: no piece ever holds half a character
    stream = TextStream(bpe)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)


def test_a_character_split_across_tokens_shows_once_it_is_whole(bpe):
    ids = bpe.encode("🎉")
    assert len(ids) == 4  # four bytes, none of them merged in this corpus
    stream = TextStream(bpe)
    assert [stream.push(i) for i in ids] == ["", "", "", "🎉"]
    assert [bpe.label(i) for i in ids] == ["<0xF0>", "<0x9F>", "<0x8E>", "<0x89>"]
    assert readable(" é\xe9".encode("utf-8")[:3]) == " é"


def test_a_broken_byte_sequence_shows_a_replacement_character_not_garbage(bpe):
    lead, ascii_a = bpe.encode("é")[0], bpe.encode("a")[0]  # a lead byte, then no continuation
    stream = TextStream(bpe)
    assert stream.push(lead) == "" and stream.waiting
    assert stream.push(ascii_a) == "\ufffda"
    for_people = TextStream(bpe, labels=True)  # what the window and the samples show
    assert for_people.push(lead) == "" and for_people.push(ascii_a) == f"{bpe.label(lead)}a" == "<0xC3>a"


def test_the_corpus_splits_by_characters_and_the_tokenizer_never_sees_validation():
    text = FABLE * 3
    corpus = build_corpus("fable", text, 0.1, 16, kind="bpe", vocab_size=300)
    n_val_chars = int(len(text) * 0.1)
    assert corpus.tokenizer.decode(corpus.ids[corpus.n_train:].tolist()) == text[-n_val_chars:]
    assert corpus.val_chars == n_val_chars and corpus.train_chars == len(text) - n_val_chars
    assert corpus.chars_per_token("val") == pytest.approx(n_val_chars / corpus.n_val)
    assert corpus.chars_per_token("val") > 1.5
    # trained on the training part: the same merges as a tokenizer trained on it alone
    alone = BPETokenizer.train(text[: corpus.train_chars], 300)
    assert alone.to_dict() == corpus.tokenizer.to_dict()


def test_bits_per_character_convert_a_token_loss_by_the_characters_per_token():
    corpus = build_corpus("fable", FABLE * 3, 0.1, 16, kind="bpe", vocab_size=300)
    assert corpus.bits_per_char(2.0) == pytest.approx(2.0 / math.log(2) / corpus.chars_per_token())
    chars = build_corpus("fable", FABLE, 0.1, 16)
    assert chars.bits_per_char(2.0) == pytest.approx(2.0 / math.log(2))


def test_a_bpe_model_trains_reports_bits_per_character_and_saves(tmp_path):
    corpus = build_corpus("fable", FABLE * 2, 0.1, 16, kind="bpe", vocab_size=320)
    cfg = ModelConfig(vocab_size=corpus.tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=32,
                      block_size=16, head_bias=False)
    trainer = Trainer(cfg, TrainConfig(batch_size=8, max_steps=20, eval_interval=10, eval_batches=2,
                                       sample_chars=30, threads=1, tokenizer="bpe", bpe_vocab=320), corpus)
    events = list(trainer.run())
    started = events[0]
    assert started.tokenizer == "bpe" and started.chars_per_token == pytest.approx(corpus.chars_per_token())
    evals = [e for e in events if type(e).__name__ == "Eval"]
    assert evals and all(e.val_bpc == pytest.approx(e.val_loss / math.log(2) / started.chars_per_token)
                         for e in evals)
    samples = [e for e in events if type(e).__name__ == "Sample"]
    for s in samples:  # characters, even though tokens are longer; broken bytes show as <0xE2>
        whole = re.sub(r"<0x[0-9A-F]{2}>", "", s.text)
        assert "\ufffd" not in s.text and (len(s.text) == 30 if whole == s.text else len(whole) <= 30)
    path = checkpoint.save(tmp_path / "bpe.safetensors", trainer.checkpoint())
    loaded = checkpoint.load(path)
    assert loaded.tokenizer.kind == "bpe" and loaded.tokenizer.to_dict() == corpus.tokenizer.to_dict()
    assert not loaded.model_config.head_bias and loaded.model.lm_head.bias is None
    x = torch.tensor([corpus.tokenizer.encode("The river")])
    assert torch.equal(loaded.model(x)[0], trainer.model.eval()(x)[0])


def test_generation_counts_characters_or_tokens_and_takes_any_prompt(bpe):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=bpe.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16)).eval()
    prompt = "café 🎉 naïve"
    text = sample.generate(model, bpe, prompt, SampleConfig(max_new_chars=25, seed=3))
    assert len(text) == 25
    tokens = list(sample.stream_tokens(model, bpe, prompt, SampleConfig(max_new_tokens=12, seed=3)))
    assert len(tokens) == 12
    # the same seed draws the same tokens whichever budget counts them
    by_tokens = "".join(t.text for t in tokens)
    assert by_tokens.startswith(text) or text.startswith(by_tokens)
    assert sample.prepare_prompt(bpe, prompt).ids == bpe.encode(prompt)


def test_an_empty_prompt_starts_from_every_token_of_the_first_character(bpe):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=bpe.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16)).eval()
    tokens = list(sample.stream_tokens(model, bpe, "", SampleConfig(max_new_tokens=6), start_char="é"))
    assert [t.id for t in tokens[:2]] == bpe.encode("é")
    assert [t.text for t in tokens[:2]] == ["", "é"]
    assert all(float(t.probs[t.id]) == 1.0 for t in tokens[:2])


def test_character_models_keep_their_behaviour():
    tok = CharTokenizer.from_text("abc ")
    assert tok.kind == "char" and tok.unit == "characters" and tok.label(0) == " "
    assert tokenizer_from_dict(tok.to_dict()).chars == tok.chars
    stream = TextStream(tok)
    assert [stream.push(i) for i in tok.encode("ab c")] == ["a", "b", " ", "c"]


def test_damaged_or_foreign_tokenizers_in_a_model_file_are_worded(bpe, tmp_path):
    with pytest.raises(ConfigError, match="damaged"):
        tokenizer_from_dict({"type": "bpe", "json": "{not json"})
    with pytest.raises(ConfigError, match="unknown"):
        tokenizer_from_dict({"type": "sentencepiece"})
    wordlevel = json.loads(bpe.tok.to_str())
    wordlevel["pre_tokenizer"] = {"type": "Whitespace"}
    with pytest.raises(ConfigError, match="not a byte-level BPE"):
        tokenizer_from_dict({"type": "bpe", "json": json.dumps(wordlevel)})
    with pytest.raises(ConfigError, match="out of range"):
        BPETokenizer.train("abc", 100)
    # in a model file: a CheckpointError that names the file
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=bpe.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8))
    path = checkpoint.save(tmp_path / "m.safetensors", checkpoint.Checkpoint(model, bpe))
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["playground"])
    meta["tokenizer"]["json"] = "garbage"
    save_file(load_file(str(path)), str(tmp_path / "bad.safetensors"), metadata={"playground": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="bad.safetensors has invalid settings: the BPE tokenizer is damaged"):
        checkpoint.load(tmp_path / "bad.safetensors")


def test_a_version_1_file_opens_with_a_head_bias(tmp_path):
    """Files written before subwords (format 1, no head_bias in the settings) still open."""
    corpus = build_corpus("phrase", builtin_text("phrase"), 0.1, 8)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=13, n_layer=1, n_head=2, n_embd=16, block_size=8))
    path = checkpoint.save(tmp_path / "m.safetensors", checkpoint.Checkpoint(model, corpus.tokenizer))
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["playground"])
    meta["format_version"] = 1
    del meta["model_config"]["head_bias"]
    save_file(load_file(str(path)), str(tmp_path / "v1.safetensors"), metadata={"playground": json.dumps(meta)})
    old = checkpoint.load(tmp_path / "v1.safetensors")
    assert old.model_config.head_bias and old.tokenizer.kind == "char"
    assert torch.equal(old.model.lm_head.bias, model.lm_head.bias)


def test_distinct_windows_counts_ids_like_text():
    from playground.engine.data.corpus import distinct_windows
    text = "to be or not to be " * 5
    ids = CharTokenizer.from_text(text).encode_array(text)
    assert distinct_windows(ids, 6) == distinct_windows(text, 6) == len({text[i:i + 7] for i in range(19)})
    assert distinct_windows(np.arange(30, dtype=np.int32), 4) == 26


def _hf_byte_level(text, size, special=()):
    """A tokenizers BPE trained here by hand, for shapes BPETokenizer.train does not make."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=size, min_frequency=2, special_tokens=list(special), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def test_training_merges_pairs_seen_twice_up_to_the_size_then_adds_end_of_text():
    bytes_only = BPETokenizer.train("abab cd", 256)  # the smallest size: the bytes, no merges
    assert (bytes_only.vocab_size, bytes_only.merges, bytes_only.end_of_text) == (257, 0, 256)
    once = BPETokenizer.train("abab cd", 300)  # 'ab' is seen twice: merged; 'ba', 'cd' once: not
    assert (once.vocab_size, once.merges, once.end_of_text) == (258, 1, 257)
    assert once.encode("abab") == [256, 256] and len(once.encode(" cd")) == 3
    assert once.tok.id_to_token(257) == "<|endoftext|>" and once.token_bytes(257) == b""
    assert once.describe() == "byte-level BPE: 258 tokens (1 merges, end-of-text)"
    assert BPETokenizer.train("abab cd", 65_536).vocab_size == 258  # the largest size is allowed
    assert BPETokenizer.train(FABLE, 300).vocab_size == 300  # the size binds, end-of-text included
    for size in (255, 65_537, 300.0):
        with pytest.raises(ConfigError, match=re.escape(f"BPE vocabulary size {size!r} is out of range: "
                                                        "use 256 to 65,536")):
            BPETokenizer.train("abab cd", size)


def test_special_tokens_stand_for_no_bytes_wherever_they_are_and_other_symbols_are_refused():
    tok = _hf_byte_level("abab cd", 300, special=["<|endoftext|>"])  # end-of-text first, as id 0
    first = BPETokenizer(tok)
    assert first.vocab_size == tok.get_vocab_size() == 258 and first.end_of_text == 0
    assert first.token_bytes(0) == b"" and first.decode(first.encode("abab cd")) == "abab cd"
    assert [first.token_bytes(i) for i in first.encode("abab")] == [b"ab", b"ab"]
    tok.add_tokens(["two words"])  # an ordinary token that is not written in byte-level symbols
    with pytest.raises(ConfigError, match=r"^BPE token 258 \('two words'\) is not made of byte-level symbols$"):
        BPETokenizer(tok)


def test_encode_array_uses_the_smallest_type_and_reports_progress_per_16_pieces(bpe):
    assert bpe.encode_lenient("anything \x00").unknown == ()  # a byte-level BPE knows every text
    text = "ab\ncd\n" * 40  # 40 pieces of 3+ characters, each cut at a newline between letters
    seen = []
    ids = bpe.encode_array(text, progress=seen.append, piece_chars=3)
    assert ids.dtype == np.int32 and ids.tolist() == bpe.encode(text)
    assert seen == [16 / 40, 32 / 40, 1.0]
    assert bpe.encode_array("").dtype == np.int32 and bpe.encode_array("").size == 0
    old = BPETokenizer(_hf_byte_level("abab cd", 256))  # a file from before end-of-text: 256 ids
    assert old.vocab_size == 256 and old.end_of_text is None
    assert old.describe() == "byte-level BPE: 256 tokens (0 merges)"
    small = old.encode_array("abab cd")
    assert small.dtype == np.uint8 and small.tolist() == old.encode("abab cd")
    with_end = BPETokenizer.train("abab cd", 256)  # 257 ids: the last, 256, needs more than a byte
    assert with_end.encode_array("a<|endoftext|>").tolist() == [with_end.encode("a")[0], 256]


def test_a_padded_vocabulary_travels_in_the_model_file_within_its_bounds():
    small = BPETokenizer.train("abab cd", 300)  # 258 tokens
    raw = small.tok.to_str()
    assert small.to_dict() == {"type": "bpe", "json": raw}  # not padded: no pad_to written
    padded = BPETokenizer.padded(small, 264)
    assert padded.vocab_size == 264 and padded.token_bytes(263) == b"" and padded.token_bytes(256) == b"ab"
    assert padded.to_dict() == {"type": "bpe", "json": raw, "pad_to": 264}
    again = BPETokenizer.from_dict(padded.to_dict())
    assert again.vocab_size == 264 and again.token_bytes(263) == b"" and again.end_of_text == 257
    assert BPETokenizer.from_dict({"type": "bpe", "json": raw, "pad_to": 258}).vocab_size == 258
    assert BPETokenizer.from_dict({"type": "bpe", "json": raw, "pad_to": 4 * 65_536}).vocab_size == 4 * 65_536
    for bad in (257, 4 * 65_536 + 1, "300", 300.0):
        with pytest.raises(ConfigError, match=re.escape(f"the BPE tokenizer's padding {bad!r} is not a size")):
            BPETokenizer.from_dict({"type": "bpe", "json": raw, "pad_to": bad})
    for bad in ("junk", None, {"type": "bpe"}, {"type": "bpe", "json": 3}):
        with pytest.raises(ConfigError, match="^" + re.escape(
                "a BPE tokenizer must be an object {'type': 'bpe', 'json': '...'}") + "$"):
            BPETokenizer.from_dict(bad)
    wordlevel = json.loads(raw)
    wordlevel["pre_tokenizer"] = {"type": "Whitespace"}
    with pytest.raises(ConfigError, match=re.escape("not a byte-level BPE (BPE, Whitespace, ByteLevel)")):
        BPETokenizer.from_dict({"type": "bpe", "json": json.dumps(wordlevel)})
