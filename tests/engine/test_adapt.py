"""Adapting a model to new text: fully or with LoRA (peft), the original text's loss measured at
every evaluation beside the new text's, replay, and what is refused in words."""

import math

import pytest
import torch

from playground.engine.config import AdaptConfig, ModelConfig, TrainConfig
from playground.engine.errors import ConfigError
from playground.engine.events import Done, Eval
from playground.engine.model import checkpoint
from playground.engine.model.lora import has_adapters, merged, trainable
from playground.engine.training.adapt import prepare_adaptation
from playground.engine.training.health import forgetting
from playground.engine.training.prepare import prepare_run

OLD = "the cat sat on the mat. " * 40           # what the base learns
NEW = "a mat sat on the cat. " * 40             # the same characters, another text
TRAIN = TrainConfig(batch_size=16, max_steps=120, learning_rate=1e-2, min_lr=1e-2, eval_interval=40,
                    eval_batches=4, sample_chars=0, threads=1)


@pytest.fixture(scope="module")
def base():
    model = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16)
    trainer = prepare_run("old", OLD, model, TRAIN)
    list(trainer.run())
    return trainer.checkpoint()


def run(base, adapt, steps=60, **options):
    trainer = prepare_adaptation(base, "new", NEW, TRAIN.replace(max_steps=steps, eval_interval=20), adapt, **options)
    events = list(trainer.run())
    return trainer, [e for e in events if isinstance(e, Eval)], events[-1]


def test_the_base_keeps_its_original_text_and_a_full_fine_tune_shows_what_it_forgets(base):
    assert base.state["original"]["name"] == "old" and base.state["original"]["validation"]
    trainer, evals, done = run(base, AdaptConfig(method="full"))
    assert isinstance(done, Done) and all(e.base_val_loss is not None for e in evals)
    # the base is scored before the first step: its original text's loss is its own validation's
    assert evals[0].step == 0 and evals[0].base_val_loss == pytest.approx(base.state["val_loss"], abs=0.05)
    assert evals[-1].val_loss < evals[0].val_loss          # the new text is learned
    assert evals[-1].base_val_loss > evals[0].base_val_loss  # and the old one forgotten, measured
    assert trainable(trainer.model)[0] == trainable(trainer.model)[1]  # every weight trains
    points = [(e.step, e.val_loss, e.base_val_loss) for e in evals]
    hint = forgetting(points, "full")
    assert hint.startswith("Forgetting") and "Replay 0.25" in hint and "LoRA" in hint
    assert "raise Replay" in forgetting(points, "full", replay=0.2) and "LoRA" not in forgetting(points, "lora")
    assert forgetting(points[:1] + [(60, points[-1][1], points[0][2] * 1.05)], "full") == ""  # within 10%


def test_lora_trains_a_small_share_leaves_the_base_frozen_and_merges_exactly(base):
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    trainer, evals, done = run(base, AdaptConfig(method="lora", rank=4, alpha=8))
    n, total = trainable(trainer.model)
    assert has_adapters(trainer.model) and 0 < n < total / 5
    assert evals[-1].val_loss < evals[0].val_loss
    for name, p in trainer.model.named_parameters():  # the base's own weights never moved
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(p.detach(), before[key]), name
    plain = merged(trainer.model).eval()
    assert not has_adapters(plain) and all(p.requires_grad for p in plain.parameters())
    ids = torch.randint(base.model_config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapted = trainer.model.eval()(ids)[0]
        assert torch.allclose(adapted, plain(ids)[0], atol=1e-5)
    saved = trainer.checkpoint()  # an ordinary model: the adapters merged, no optimizer state
    assert not has_adapters(saved.model) and saved.optimizer_state is None
    assert saved.state["original"]["name"] == "old"  # what it first learned stays its original


def test_replay_mixes_the_original_text_into_each_batch(base):
    trainer = prepare_adaptation(base, "new", NEW, TRAIN.replace(max_steps=1), AdaptConfig(method="full", replay=0.25))
    trainer._original_train = trainer.original.train_ids()
    x, y, w = trainer._batch(trainer.corpus.train_ids(), 16, 16, torch.Generator().manual_seed(0))
    rows = [trainer.corpus.tokenizer.decode(r.tolist()) for r in x]
    assert x.shape == (16, 16) and w is None
    assert all(r in NEW * 2 and r not in OLD * 2 for r in rows[:12])  # 12 rows of the new text
    assert all(r in OLD * 2 and r not in NEW * 2 for r in rows[12:])  # 4 of the original


def test_characters_the_base_never_saw_are_named_or_left_out_on_request(base):
    with pytest.raises(ConfigError, match=r"never saw \('Q', 'Z'\)|never saw .*'Q'"):
        prepare_adaptation(base, "new", NEW + "QZ", TRAIN, AdaptConfig(method="full"))
    trainer = prepare_adaptation(base, "new", NEW + "QZ", TRAIN, AdaptConfig(method="full"), drop_unknown=True)
    assert "Q" not in trainer.corpus.text and len(trainer.corpus.text) == len(NEW)


def test_stopping_keeps_what_was_trained(base):
    trainer = prepare_adaptation(base, "new", NEW, TRAIN.replace(max_steps=10_000, eval_interval=10_000),
                                 AdaptConfig(method="lora", rank=2))
    done, evals = None, []
    for event in trainer.run():
        if getattr(event, "step", 0) == 15 and not isinstance(event, Done):
            trainer.control.stop()
        if isinstance(event, Eval):
            evals.append(event.step)
        if isinstance(event, Done):
            done = event
    # stopped between evaluations: the weights in hand are scored, then compared with the base's
    assert done.status == "stopped" and done.last_step == 15 and evals == [0, 15]
    kept = trainer.checkpoint()
    assert kept.state["trained_to"] == 15 and not torch.equal(kept.model.h[0].attn.c_attn.weight,
                                                               base.model.h[0].attn.c_attn.weight)


def test_replay_without_the_original_text_says_how_to_name_it(base, tmp_path):
    bare = checkpoint.Checkpoint(base.model, base.tokenizer, base.train_config, {"corpus": "pasted text"})
    with pytest.raises(ConfigError, match="--base-text"):
        prepare_adaptation(bare, "new", NEW, TRAIN, AdaptConfig(method="full", replay=0.2))
    trainer = prepare_adaptation(bare, "new", NEW, TRAIN, AdaptConfig(method="full", replay=0.2),
                                 original_name="old", original_text=OLD)
    assert trainer.original is not None and math.isfinite(trainer.estimate_loss("original"))
