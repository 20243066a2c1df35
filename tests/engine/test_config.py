"""Settings validation speaks in words and names the field."""

import math

import pytest

from playground.engine.config import ModelConfig, SampleConfig, TrainConfig, check_fits_text
from playground.engine.errors import ConfigError


def test_width_must_divide_by_heads():
    with pytest.raises(ConfigError, match="width 100 must be divisible by heads 3"):
        ModelConfig(n_embd=100, n_head=3).check()


def test_block_longer_than_text_is_named():
    with pytest.raises(ConfigError, match=r"block size 256 is longer than the training text \(120 characters\)"):
        check_fits_text(ModelConfig(block_size=256), TrainConfig(batch_size=4), 120)


def test_batch_larger_than_text_is_named():
    with pytest.raises(ConfigError, match="batch size 500 is larger than the training text"):
        check_fits_text(ModelConfig(block_size=8), TrainConfig(batch_size=500), 120)


@pytest.mark.parametrize("field,value,words", [
    ("n_layer", 0, "layers 0 is out of range"),
    ("n_layer", -3, "layers -3 is out of range"),
    ("n_embd", 10**9, "width 1000000000 is out of range"),
    ("n_head", 2.5, "heads must be a whole number"),
    ("block_size", True, "block size must be a whole number"),
    ("dropout", 1.5, "dropout 1.5 is out of range"),
    ("dropout", math.nan, "dropout must be a finite number"),
])
def test_model_fields_out_of_range(field, value, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**{field: value}).check()


@pytest.mark.parametrize("changes,words", [
    ({"learning_rate": 0.0}, "learning rate 0 is out of range"),
    ({"learning_rate": math.nan}, "learning rate must be a finite number"),
    ({"learning_rate": 10.0, "min_lr": 1e-4}, "learning rate 10 is out of range"),
    ({"max_steps": 10, "warmup_steps": 50}, "warm-up steps 50 exceed the number of steps 10"),
    ({"batch_size": 0}, "batch size 0 is out of range"),
    ({"min_lr": 0.5}, "minimum learning rate 0.5 is above the learning rate"),
    ({"optimizer": "sgd"}, "optimizer 'sgd' is unknown"),
])
def test_train_fields_out_of_range(changes, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**changes).check()


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        ModelConfig(n_layer=0, n_head=0).check()
    assert "layers" in str(info.value) and "heads" in str(info.value)


def test_sample_config_checks():
    with pytest.raises(ConfigError, match="temperature -1 is out of range"):
        SampleConfig(temperature=-1).check()
    with pytest.raises(ConfigError, match="top-p 0 is out of range"):
        SampleConfig(top_p=0).check()
    assert SampleConfig(temperature=0).check().temperature == 0


def test_round_trip_through_dict_ignores_unknown_keys():
    cfg = TrainConfig(batch_size=3)
    assert TrainConfig.from_dict({**cfg.to_dict(), "future_field": 1}) == cfg


def test_an_edited_learning_rate_keeps_the_decay_ratio():
    base = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_steps=100, max_steps=2000)
    assert base.edited(learning_rate=2e-3).min_lr == pytest.approx(2e-4)
    assert base.edited(learning_rate=2e-3, min_lr=5e-5).min_lr == 5e-5  # given: kept
    assert base.edited(max_steps=50).warmup_steps == 5  # shorter than its warm-up: a tenth
    assert base.edited(max_steps=50, warmup_steps=50).warmup_steps == 50
    broken = base.edited(learning_rate=float("nan"))
    assert [p for p in broken.problems() if "learning rate" in p] == \
        ["learning rate must be a finite number, not nan"]


def test_every_model_setting_declares_its_values():
    import dataclasses
    for f in dataclasses.fields(ModelConfig):
        assert f.metadata.get("label"), f.name
        assert f.metadata["choices"] or f.metadata["low"] is not None, f.name
