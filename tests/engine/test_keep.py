"""The best weights by validation loss are what a run ends with (keep="best"), the last ones on
request (keep="last"), and patience stops a run that no longer improves."""

import json

import pytest

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.data.corpus import build_corpus
from playground.engine.events import Done, Eval
from playground.engine.training.trainer import Trainer

# trains on "abc" repeated; validates on "acb": once the model is sure of its training text,
# validation only gets worse, so the best weights come early and the last ones are worse
TEXT = "abc" * 300 + "acb" * 40
MODEL = ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=16, block_size=8)
TRAIN = TrainConfig(batch_size=8, max_steps=120, learning_rate=1e-2, min_lr=1e-2, eval_interval=10,
                    eval_batches=2, sample_chars=0, threads=1)


def run(**changes):
    corpus = build_corpus("abc", TEXT, 0.1, MODEL.block_size)
    trainer = Trainer(MODEL, TRAIN.replace(**changes), corpus)
    events = list(trainer.run())
    return trainer, [e for e in events if isinstance(e, Eval)], events[-1]


def test_the_best_weights_are_the_ones_in_hand_at_the_end():
    trainer, evals, done = run()
    best = min(evals, key=lambda e: e.val_loss)
    assert isinstance(done, Done) and done.best_step == best.step < done.last_step == 120
    assert evals[-1].val_loss > best.val_loss  # the last weights are worse: there is a choice
    assert done.step == trainer.step == best.step and done.final_val_loss == best.val_loss
    assert trainer.estimate_loss("val") == pytest.approx(best.val_loss, abs=1e-6)
    assert f"kept the best weights: step {best.step}" in done.message
    assert [e.best_step for e in evals][-1] == best.step
    state = trainer.checkpoint().state
    assert state["step"] == best.step and state["val_loss"] == best.val_loss and state["trained_to"] == 120


def test_keep_last_ends_with_the_last_weights():
    trainer, evals, done = run(keep="last")
    assert done.step == trainer.step == 120 and done.best_step < 120
    assert trainer.estimate_loss("val") == pytest.approx(evals[-1].val_loss, abs=1e-6)
    assert "kept the best" not in done.message


def test_patience_stops_a_run_that_no_longer_improves():
    trainer, evals, done = run(patience=2, max_steps=1000)
    assert done.status == "early-stopped" and "did not improve for 2 evaluations" in done.message
    assert done.last_step == done.best_step + 2 * TRAIN.eval_interval < 1000
    assert trainer.step == done.best_step


def test_info_json_names_the_step_and_validation_loss_of_the_weights_held(tmp_path, capsys):
    from playground.cli import main
    out = tmp_path / "abc.safetensors"
    assert main(["train", "--text", TEXT, "--layers", "1", "--heads", "1", "--width", "16", "--block", "8",
                 "--batch", "8", "--steps", "120", "--lr", "0.01", "--eval-interval", "10",
                 "--threads", "1", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    state = info["state"]
    assert state["trained_to"] == 120 and state["step"] < 120 and state["val_loss"] > 0
    assert info["train_config"]["keep"] == "best" and info["params"] > 0


def test_a_continued_run_never_replaces_its_start_with_worse_weights():
    """More steps at a learning rate that wrecks the model: the run ends on the weights it
    started from, and says so, instead of on the least bad of the wrecked ones."""
    corpus = build_corpus("abc", TEXT, 0.1, MODEL.block_size)
    trainer = Trainer(MODEL, TRAIN.replace(max_steps=40), corpus)
    list(trainer.run())
    start_step, start_val = trainer.step, trainer.estimate_loss("val")
    resumed = Trainer.resume(trainer.checkpoint(), corpus, TRAIN.replace(max_steps=30, learning_rate=1.0, min_lr=1.0))
    events = list(resumed.run())
    evals, done = [e for e in events if isinstance(e, Eval)], events[-1]
    assert evals and min(e.val_loss for e in evals) > start_val  # every evaluation was worse
    assert done.step == resumed.step == start_step and done.best_step == start_step
    assert resumed.estimate_loss("val") == pytest.approx(start_val, abs=1e-6)
    assert f"beat the weights it started from (validation {start_val:.4f} at step {start_step})" in done.message


def test_a_continued_run_that_improves_keeps_its_own_best(phrase_corpus):
    model = MODEL.replace(vocab_size=phrase_corpus.tokenizer.vocab_size)
    trainer = Trainer(model, TRAIN.replace(max_steps=10, learning_rate=1e-3, min_lr=1e-3), phrase_corpus)
    list(trainer.run())
    start_val = trainer.estimate_loss("val")
    resumed = Trainer.resume(trainer.checkpoint(), phrase_corpus, TRAIN.replace(max_steps=20))
    done = list(resumed.run())[-1]
    assert done.best_step > 10 and done.best_val_loss < start_val and done.step == done.best_step
    assert "started from" not in done.message
