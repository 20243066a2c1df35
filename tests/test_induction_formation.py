"""The induction-formation measurement's reading of a run (bench/induction_formation.py): the
jump's onset and middle, and the loss's fall before, during and after it."""

import pytest

from playground.bench.induction_formation import Reading, summary
from playground.engine.data.corpus import BUILTINS
from playground.engine.presets import get_preset


def run(scores, losses):
    return [Reading(25 * i, float(i), loss, score, (1, 0), 3.3, 3.3) for i, (score, loss) in
            enumerate(zip(scores, losses))]


def test_the_jump_and_the_bend_are_read_from_the_readings():
    scores = [0.03, 0.03, 0.03, 0.03, 0.2, 0.5, 0.7, 0.8, 0.83]
    losses = [float("nan"), 3.30, 3.29, 3.28, 3.1, 2.8, 2.6, 2.55, 2.54]
    found = summary(run(scores, losses))
    assert (found["onset_step"], found["jump_step"]) == (100, 125)
    rates = found["loss_fall_per_100"]
    assert rates["before"] == pytest.approx(0.2 / 75 * 100) and rates["during"] == pytest.approx(0.3 / 25 * 100)
    assert rates["after"] == pytest.approx(0.26 / 75 * 100)
    assert found["initial_score"] == 0.03 and len(found["readings"]) == 9


def test_no_rise_is_no_jump():
    found = summary(run([0.03, 0.05, 0.1, 0.2], [float("nan"), 3.3, 3.2, 3.1]))
    assert found["jump_step"] is None and found["loss_fall_per_100"] is None


def test_the_induction_preset_trains_on_the_generated_corpus():
    preset = get_preset("induction")
    assert preset.corpus == "repeat" and BUILTINS["repeat"][0] == ""
    assert preset.model.block_size >= 2 * 26 and preset.model.n_layer >= 2   # two layers compose
