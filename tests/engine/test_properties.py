"""Property-based tests: whatever corpus, prompt or settings a user gives, the engine either
works or raises its own documented error type (PlaygroundError), never anything else."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.engine.config import ModelConfig, SampleConfig, TrainConfig
from playground.engine.data.corpus import build_corpus
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.errors import PlaygroundError
from playground.engine.model.generation import generate
from playground.engine.model.gpt import GPT
from playground.engine.model.param_count import count_params
from playground.engine.training.trainer import Trainer

ANY_VALUE = st.one_of(st.integers(-10, 10**7), st.floats(allow_nan=True, allow_infinity=True),
                      st.none(), st.booleans(), st.text(max_size=3))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(text=st.text(max_size=300), block=st.integers(1, 40), val=st.floats(0, 0.5))
def test_any_corpus_string_builds_or_raises_our_error(text, block, val):
    try:
        corpus = build_corpus("x", text, val, block)
    except PlaygroundError:
        return
    normalised = text.removeprefix("\ufeff").replace("\r\n", "\n")
    assert corpus.tokenizer.decode(corpus.ids.tolist()) == normalised
    assert corpus.n_train + corpus.n_val == len(normalised)
    assert corpus.n_val == 0 or corpus.n_val >= block + 1


@FAST
@given(fields=st.fixed_dictionaries({k: ANY_VALUE for k in
                                     ["vocab_size", "n_layer", "n_head", "n_embd", "block_size", "dropout"]}))
def test_any_model_settings_check_or_raise_our_error(fields):
    cfg = ModelConfig(**fields)
    try:
        cfg.check()
    except PlaygroundError:
        return
    assert cfg.n_embd % cfg.n_head == 0 and count_params(cfg) > 0


@FAST
@given(fields=st.fixed_dictionaries({k: ANY_VALUE for k in
                                     ["batch_size", "max_steps", "learning_rate", "min_lr",
                                      "warmup_steps", "grad_clip", "eval_interval", "seed"]}))
def test_any_training_settings_check_or_raise_our_error(fields):
    cfg = TrainConfig(**fields)
    try:
        cfg.check()
    except PlaygroundError:
        return
    assert math.isfinite(cfg.learning_rate) and 0 < cfg.learning_rate <= 1
    assert cfg.warmup_steps <= cfg.max_steps


@settings(max_examples=25, deadline=None)
@given(layers=st.integers(1, 2), heads=st.integers(1, 4), width=st.integers(1, 24),
       block=st.integers(1, 12), batch=st.integers(1, 40), text=st.text(min_size=0, max_size=80))
def test_small_valid_settings_train_two_steps_or_refuse_in_words(layers, heads, width, block, batch, text):
    try:
        corpus = build_corpus("x", text, 0.1, block)
        model = ModelConfig(vocab_size=corpus.tokenizer.vocab_size, n_layer=layers, n_head=heads,
                            n_embd=width, block_size=block).check()
        trainer = Trainer(model, TrainConfig(batch_size=batch, max_steps=2, eval_interval=2,
                                             eval_batches=1, sample_chars=3, threads=1), corpus)
    except PlaygroundError:
        return
    done = list(trainer.run())[-1]
    assert done.status == "completed" and done.step == 2


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=8, block_size=6)).eval()


@FAST
@given(prompt=st.text(max_size=200), temperature=st.floats(0, 3), top_k=st.integers(0, 10),
       top_p=st.floats(0.01, 1.0), chars=st.integers(0, 20))
def test_any_prompt_generates_or_raises_our_error(small_model, prompt, temperature, top_k, top_p, chars):
    tok = CharTokenizer(list("abcde"))
    cfg = SampleConfig(max_new_chars=chars, temperature=temperature, top_k=top_k, top_p=top_p)
    try:
        out = generate(small_model, tok, prompt, cfg, start_char="a")
    except PlaygroundError:
        assert prompt and not set(prompt) & set("abcde")
        return
    assert len(out) == chars and set(out) <= set("abcde")
