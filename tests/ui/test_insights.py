"""The insight views: odds equal the sampler's, attention is causal and normalised, the
timeline holds one sample per evaluation, branching continues from the chosen character,
earlier runs stay on the plot, the sweep and health views say true things."""

import math

import numpy as np
import pytest
import torch
from PySide6.QtWidgets import QLabel, QScrollArea, QToolButton

from playground.engine.config import SampleConfig
from playground.engine.events import Started, Step
from playground.engine.model.generation import stream_tokens
from playground.ui.views.health_panel import diagnose
from playground.ui.views.sweep_view import TEMPERATURES

from .conftest import use_tiny_settings


@pytest.fixture
def trained(window, qtbot):
    use_tiny_settings(window, steps=40, eval_interval=10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    return window


def _generate(window, qtbot, prompt="the ", length=60, seed=5, temperature=100):
    window.generation.prompt.setText(prompt)
    window.generation.length.setValue(length)
    window.generation.seed.setValue(seed)
    window.generation.temperature.setValue(temperature)
    with qtbot.waitSignal(window.generationFinished, timeout=60_000):
        window.generation.generate.click()


def test_shown_probabilities_equal_the_samplers(trained, qtbot):
    _generate(trained, qtbot, seed=5)
    panel = trained.generation
    model = trained.current.value.snapshot()
    tok = trained.current.tokenizer
    expected = list(stream_tokens(model, tok, "the ", SampleConfig(max_new_chars=60, temperature=1.0, seed=5)))
    assert len(panel.tokens) == 60
    for (text, p, candidates, label), token in zip(panel.tokens, expected):
        assert text == label == token.text and math.isclose(p, float(token.probs[token.id]), rel_tol=1e-6)
        top = torch.topk(token.probs, len(candidates))
        assert [c[0] for c in candidates] == [tok.label(i) for i in top.indices.tolist()]
    # the chart shows the clicked position's odds
    assert panel.select_position(4 + 10)
    candidates = panel.tokens[10][2]
    shown = panel.odds.shown_probabilities()
    assert [c for c, _ in shown] == [c[0] for c in candidates]
    assert np.allclose([q for _, q in shown], [c[1] for c in candidates])


def test_branch_continues_from_the_chosen_character(trained, qtbot):
    _generate(trained, qtbot, length=30, temperature=0)
    panel = trained.generation
    position = 4 + 5
    panel.select_position(position)
    chosen = panel.tokens[5][0]
    other = next(c[2] for c in panel.tokens[5][2] if c[2] != chosen)
    before = panel.text()
    with qtbot.waitSignal(trained.generationFinished, timeout=60_000):
        panel.odds.branchRequested.emit(position, other)
    after = panel.text()
    assert after.startswith(before[:position] + other)
    assert len(after) == position + 1 + 30


def test_attention_rows_sum_to_one_and_are_causal(trained, qtbot):
    trained.generation.prompt.setText("the lazy dog")
    with qtbot.waitSignal(trained.gen_ctl.attentionReady, timeout=30_000):
        trained.attention.refresh.click()
    view = trained.attention
    # cropped to the block: the prompt's last 8 characters, one row and column of weights each
    assert view.chars == list("lazy dog") and view.maps.shape[-2:] == (8, 8)
    for layer in range(view.maps.shape[0]):
        for head in range(view.maps.shape[1]):
            grid = view.maps[layer, head]
            assert np.allclose(grid.sum(axis=1), 1.0, atol=1e-5)
            assert np.all(np.triu(grid, 1) == 0)
    view.head.setValue(1)
    assert np.array_equal(view.current(), view.maps[0, 1])


def test_timeline_holds_one_sample_per_evaluation(trained, qtbot):
    samples = trained.samples
    assert [s for s, _ in samples.samples] == [10, 20, 30, 40]
    assert samples.slider.maximum() == 3
    samples.slider.setValue(1)
    assert samples.current.text().startswith("step 20:")
    assert trained.plot.marker.isVisible() and trained.plot.marker.value() == 20


def test_earlier_runs_stay_on_the_plot_after_a_new_run(trained, qtbot):
    plot = trained.plot
    first = plot.raw.y[: plot.raw.n].copy()
    trained.training.reset.click()
    trained.settings.spins["width"].setValue(24)
    with qtbot.waitSignal(trained.trainingFinished, timeout=120_000):
        trained.training.train.click()
    assert len(plot.runs) == 1
    assert "1x16, 2 heads, block 8" in plot.runs[0].name()
    assert len(plot.runs[0].yData) == len(first)
    assert plot.raw.n == 40 and plot.runs[0] in plot.plot.getPlotItem().items


def test_smoothing_and_time_axis(trained):
    plot = trained.plot
    plot.smoothing_slider.setValue(0)
    assert np.allclose(plot.smooth.y[: plot.smooth.n], plot.raw.y[: plot.raw.n])
    plot.smoothing_slider.setValue(90)
    assert not np.allclose(plot.smooth.y[: plot.smooth.n], plot.raw.y[: plot.raw.n])
    plot.x_axis.setCurrentIndex(1)
    x, _ = plot._xy(plot.raw)
    assert np.all(np.diff(x) >= 0) and x[-1] < 120  # seconds, not steps


def test_temperature_sweep_side_by_side(trained, qtbot):
    trained.generation.prompt.setText("the ")
    trained.generation.length.setValue(25)
    with qtbot.waitSignal(trained.generationFinished, timeout=60_000):
        trained.generation.sweep.click()
    texts = trained.sweep.texts()
    assert len(texts) == len(TEMPERATURES) and all(len(t) == 4 + 25 for t in texts)
    _generate(trained, qtbot, length=25, temperature=0)
    assert texts[0] == trained.generation.text()  # the greedy column equals a greedy generation


def test_health_preview_and_hints(window, trained):
    health = trained.health
    x, y = health.lr_curve.getData()
    assert len(x) == 40 and math.isclose(y[0], 0.01)
    assert health.grad.n == 40
    assert "random guessing" in diagnose(np.full(300, math.log(13)), 13)
    assert "too high" in diagnose(np.array([1.0, float("nan")]), 13)
    assert "rising" in diagnose(np.concatenate([np.full(50, 1.0), np.full(50, 2.0)]), 13)
    assert diagnose(np.linspace(3, 1, 300), 13) == ""


def test_gradient_chart_is_pinned_to_the_run_then_frames_everything(window):
    health = window.health
    view = health.grad_plot.getPlotItem().getViewBox()
    window.train_ctl.started.emit(Started(1000, 13, 500, 50, 100, 200, 1))
    for step, norm in [(101, 1.0), (102, 4.0), (103, 2.0)]:
        window.train_ctl.stepped.emit(Step(step, 2.0, 1e-3, norm, False, 100.0, 0.1))
    health.refresh()
    (x0, x1), (y0, y1) = view.viewRange()
    assert x0 <= 100 and 200 <= x1 < 205  # the whole run's width from the start, not 3 steps
    assert y0 == 0 and 4.0 < y1 < 5.0 and view.state["autoRange"] == [False, False]
    window.train_ctl.ended.emit(None)
    assert view.state["autoRange"][0] and view.state["autoRange"][1]


def test_every_panel_explains_itself(window):
    buttons = [b for b in window.findChildren(QToolButton) if b.objectName().startswith("help")]
    assert len(buttons) == len(window.docks) + 1  # every panel, and the training view
    for button in buttons:
        text = window.findChild(QLabel, button.objectName() + "Text")
        area = window.findChild(QScrollArea, button.objectName() + "Area")  # a long one scrolls
        button.setChecked(True)
        assert not area.isHidden() and len(text.text()) > 100  # (its tab may be hidden)
        assert area.maximumHeight() < 200
        button.setChecked(False)
        assert area.isHidden()
