"""One rule, one place: the same visible settings give the same TrainConfig in the command line
and in the window; a prompt's unknown characters get the same words everywhere."""

import pytest

from playground.cli import build_parser
from playground.cli.train import configs_from_args
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model.generation import prepare_prompt

SPINS = {"layers": "--layers", "heads": "--heads", "width": "--width", "block": "--block",
         "batch": "--batch", "steps": "--steps", "warmup": "--warmup",
         "eval_interval": "--eval-interval", "seed": "--seed", "threads": "--threads"}


@pytest.mark.parametrize("preset,edits", [
    ("seed", {"lr": 0.01, "steps": 200}),
    ("shakespeare-cpu", {"lr": 0.002, "steps": 500, "batch": 16, "warmup": 50, "seed": 7}),
    ("shakespeare-fast", {"lr": 0.001, "layers": 2, "width": 96, "eval_interval": 25, "threads": 1}),
    ("arithmetic", {"steps": 40, "dropout": 0.1, "block": 16}),
])
def test_the_same_visible_settings_give_the_same_configs(window, preset, edits):
    window.settings.apply_preset(preset)
    flags = ["train", "--preset", preset]
    for name, value in edits.items():
        if name == "lr":
            window.settings.lr.setValue(value)
            flags += ["--lr", str(value)]
        elif name == "dropout":
            window.settings.dropout.setValue(value)
            flags += ["--dropout", str(value)]
        else:
            window.settings.spins[name].setValue(value)
            flags += [SPINS[name], str(value)]
    _, model, train = configs_from_args(build_parser().parse_args(flags))
    assert window.settings.train_config() == train
    assert window.settings.model_config().replace(vocab_size=0) == model.replace(vocab_size=0)
    if "lr" in edits:  # the decay keeps its ratio to the peak, in both
        base = window.settings._base_train
        assert train.min_lr == pytest.approx(base.min_lr * edits["lr"] / base.learning_rate)


def test_unknown_prompt_characters_are_named_in_the_same_words(window, qtbot):
    from .conftest import use_tiny_settings
    use_tiny_settings(window, steps=5)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    tokenizer = window.current.tokenizer
    expected = prepare_prompt(tokenizer, "the QX").message
    window.generation.prompt.setText("the QX")
    assert window.generation.notice.text() == expected[0].upper() + expected[1:]
    window.generation.prompt.setText("QXZ")
    window.generation.generate.click()
    assert "none of the prompt's characters" in window.last_error
    assert prepare_prompt(CharTokenizer(list("ab")), "").ids == []
