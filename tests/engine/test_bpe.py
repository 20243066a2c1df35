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
from playground.engine.data.bpe import BYTE_OF, BPETokenizer
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
