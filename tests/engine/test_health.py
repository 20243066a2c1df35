"""The health hints, each on a real run of the trouble it names: a learning rate that blows the
loss far above random guessing, one too small to leave it, and a healthy run with no hint."""

import math

import numpy as np
import pytest

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.data.corpus import build_corpus, builtin_text
from playground.engine.events import Done, Step
from playground.engine.training.health import diagnose, overfitting


def losses_of(lr: float, steps: int):
    corpus = build_corpus("phrase", builtin_text("phrase"), 0.1, 8)
    from playground.engine.training.trainer import Trainer
    model = ModelConfig(vocab_size=corpus.tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8)
    train = TrainConfig(batch_size=8, max_steps=steps, learning_rate=lr, min_lr=lr, eval_interval=10_000,
                        sample_chars=0, threads=1)
    events = list(Trainer(model, train, corpus).run())
    done = events[-1]
    assert isinstance(done, Done)
    return [e.loss for e in events if isinstance(e, Step)], corpus.tokenizer.vocab_size, done.status


def test_a_loss_far_above_guessing_is_a_blow_up_not_a_stall():
    losses, vocab, status = losses_of(1.0, 60)
    assert max(losses) > 3 * math.log(vocab)  # it really went far above random guessing
    hint = diagnose(losses, vocab, status)
    assert hint.startswith("The loss blew up") and "too high" in hint and "lower it" in hint and len(hint) < 160
    assert "higher learning rate" not in hint and "stuck" not in hint


def test_a_loss_that_never_leaves_guessing_is_stuck():
    losses, vocab, status = losses_of(1e-5, 200)
    hint = diagnose(losses, vocab, status)
    assert hint.startswith("Stuck at random guessing") and "higher learning rate" in hint


def test_a_healthy_run_gets_no_hint():
    losses, vocab, status = losses_of(1e-2, 200)
    assert losses[-1] < 0.6 * math.log(vocab)
    assert diagnose(losses, vocab, status) == ""


@pytest.mark.parametrize("losses,words", [
    ([1.0, float("nan")], "stopped being a number"),
    (list(np.concatenate([np.full(50, 1.0), np.full(50, 2.0)])), "rising"),
])
def test_the_other_hints(losses, words):
    assert words in diagnose(losses, 13)


def test_overfitting_names_the_best_step_and_what_to_try():
    evals = [(10, 2.0, 2.1), (20, 1.5, 1.8), (30, 1.0, 2.0), (40, 0.5, 2.4)]
    hint = overfitting(evals)
    assert hint.startswith("Overfitting") and "step 20" in hint and "more text" in hint
    assert overfitting(evals[:2]) == "" and overfitting([(10, 2.0, None)] * 4) == ""
