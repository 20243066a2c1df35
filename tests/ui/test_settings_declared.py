"""Each setting is declared once (engine/config.py: _setting) and everything people use is built
from the declaration: the command line's flag and help, the window's control with its range and
tooltip, and what the settings file remembers. A new field appears in both without more code."""

import dataclasses

import pytest

from playground.cli import build_parser
from playground.cli.common import Parser, add_setting_flags, setting_edits
from playground.engine.config import ModelConfig, TrainConfig, _setting, settings_of

REACHED = [f for c in (ModelConfig, TrainConfig) for f in settings_of(c)]


def train_parser():
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]


@pytest.mark.parametrize("f", REACHED, ids=lambda f: f.name)
def test_every_declared_setting_has_a_flag_with_its_help(f):
    flags = {flag: action for action in train_parser()._actions for flag in action.option_strings}
    action = flags[f.metadata["flag"]]
    assert action.help == f.metadata["help"] and action.help
    if f.type in (bool, "bool"):  # a yes/no is a switch: its flag turns it on (off, inverted)
        assert action.nargs == 0 and action.const is True
    elif f.metadata["choices"]:
        assert list(action.choices) == list(f.metadata["choices"])


def test_flags_become_the_settings_they_name():
    args = train_parser().parse_args(["--layers", "3", "--lr", "0.02", "--no-head-bias", "--keep", "last",
                                      "--vocab-size", "300", "--grad-clip", "0.5", "--tie-embeddings"])
    assert setting_edits(args, ModelConfig) == {"n_layer": 3, "head_bias": False, "tie_embeddings": True}
    assert setting_edits(args, TrainConfig) == {"learning_rate": 0.02, "keep": "last", "bpe_vocab": 300,
                                                "grad_clip": 0.5}


def test_every_window_setting_has_a_control_with_its_range_and_words(window):
    panel = window.settings
    shown = [f for f in REACHED if f.metadata["window"]]
    assert set(panel.fields) == {f.metadata["key"] for f in shown}
    for f in shown:
        _, widget, _ = panel.fields[f.metadata["key"]]
        assert widget.toolTip() == f.metadata["tip"] and widget.accessibleName() == f.metadata["title"]
        if hasattr(widget, "minimum") and not f.metadata["low_open"]:
            assert widget.minimum() == f.metadata["low"]
    panel.fields["grad_clip"][1].setValue(0.25)
    assert panel.train_config().grad_clip == 0.25
    again = dict(panel.remembered())
    panel.fields["grad_clip"][1].setValue(3.0)
    panel.recall(again)
    assert panel.train_config().grad_clip == 0.25


def test_a_new_setting_is_one_declaration_away_from_the_command_line():
    field = _setting(0.0, "label smoothing", low=0.0, high=0.5, key="label_smoothing",
                     help="mix this share of uniform odds into the targets")
    Extended = dataclasses.make_dataclass("Extended", [("label_smoothing", float, field)],
                                          bases=(TrainConfig,), frozen=True)
    parser = Parser(prog="test")
    add_setting_flags(parser, Extended)
    args = parser.parse_args(["--label-smoothing", "0.1"])
    assert setting_edits(args, Extended)["label_smoothing"] == 0.1
    assert Extended(label_smoothing=0.7).problems() == ["label smoothing 0.7 is out of range: use a value from 0 up to 0.5"]
