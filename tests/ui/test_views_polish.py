"""The right dock's views read well at 1280x720: attention has a colour scale and says which axis
is which, the temperature sweep shows whole lines with each temperature beside its text (side by
side where wide), and the serve panel's toggle says Stop when serving and its examples copy exactly."""

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QPlainTextEdit

from playground.ui.views.attention_view import AttentionView
from playground.ui.views.sweep_view import TEMPERATURES, SweepView


class FakeGeneration(QObject):
    """The GenerationController's signals these views listen to, and nothing else."""
    attentionReady = Signal(object)
    sweepStarted = Signal(str)
    sweepToken = Signal(object)


def test_attention_has_a_colour_scale_and_axis_titles(qtbot):
    control = FakeGeneration()
    view = AttentionView(control)
    qtbot.addWidget(view)
    item = view.plot.getPlotItem()
    assert item.getAxis("left").labelText.startswith("query: the token predicting")
    assert item.getAxis("bottom").labelText.startswith("key: the token looked at")
    bar = view.colorbar
    assert isinstance(bar, pg.ColorBarItem) and bar.getAxis("left").labelText == "attention weight"
    assert tuple(bar.levels()) == (0.0, 1.0) and not bar.interactive
    maps = np.tril(np.full((2, 1, 3, 3), 0.2))  # two layers of one head
    control.attentionReady.emit((list("abc"), maps, 40))
    assert tuple(bar.levels()) == (0.0, 1.0) and tuple(view.image.getLevels()) == (0.0, 1.0)  # not refitted
    assert view.info.text() == "3 tokens, weights of step 40; 2 layers x 1 head"


def _sweep(qtbot, width: int, height: int) -> SweepView:
    view = SweepView(FakeGeneration())
    qtbot.addWidget(view)
    view.resize(width, height)
    view.show()
    qtbot.waitExposed(view)
    view.begin("to be or not to be " * 20)  # more text than any box shows
    return view


def _whole_lines(box: QPlainTextEdit) -> bool:
    margins = box.viewportMargins()
    text_px = (box.height() - 2 * box.frameWidth() - margins.top() - margins.bottom()
               - 2 * box.document().documentMargin())
    return text_px > 0 and text_px % box.fontMetrics().lineSpacing() == 0


def test_a_narrow_sweep_has_one_row_per_temperature_with_whole_lines(qtbot):
    view = _sweep(qtbot, 380, 560)  # the right dock at 1280x720
    boxes, labels = view.boxes, view.labels
    qtbot.waitUntil(lambda: all(b.y() > a.y() for a, b in zip(boxes, boxes[1:])))
    for label, box in zip(labels, boxes):
        assert _whole_lines(box), (box.height(), box.fontMetrics().lineSpacing())
        assert box.height() >= 2 * box.fontMetrics().lineSpacing()
        assert label.geometry().right() < box.geometry().left()            # beside it, on the left
        assert box.y() <= label.y() < box.geometry().bottom()             # on its row
        assert box.width() >= 260                                          # wide enough to read
    assert [label.text().split("\n")[0] for label in labels] == [f"T = {t:g}" for t in TEMPERATURES]


def test_a_wide_sweep_puts_temperatures_side_by_side(qtbot):
    view = _sweep(qtbot, 1400, 400)
    boxes = view.boxes
    qtbot.waitUntil(lambda: boxes[1].x() > boxes[0].geometry().right())
    assert boxes[0].y() == boxes[1].y() and view.columns > 1
    assert all(_whole_lines(box) for box in boxes)
    view.resize(380, 400)  # back to narrow: one row each again
    qtbot.waitUntil(lambda: boxes[1].y() > boxes[0].y())
    assert view.columns == 1 and all(_whole_lines(box) for box in boxes)


@pytest.fixture
def current():
    """A model in hand, untrained: serving it needs weights, not good ones."""
    from playground.engine.config import ModelConfig, TrainConfig
    from playground.engine.data.corpus import build_corpus, builtin_text
    from playground.engine.training.trainer import Trainer
    from playground.ui.controllers.model_in_hand import CurrentModel, TrainedModel
    corpus = build_corpus("phrase", builtin_text("phrase"), 0.1, 8)
    cfg = ModelConfig(vocab_size=corpus.tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8)
    current = CurrentModel()
    current.set(TrainedModel(Trainer(cfg, TrainConfig(batch_size=8, max_steps=1, threads=1), corpus)))
    return current


def test_the_serve_toggle_says_stop_while_serving_and_examples_do_not_wrap(qtbot, current):
    from playground.ui.views.serve_panel import ServePanel
    panel = ServePanel(current)
    qtbot.addWidget(panel)
    panel.resize(300, 400)  # narrower than the curl line
    panel.show()
    qtbot.waitExposed(panel)
    panel.port.setValue(0)  # any free port
    assert panel.toggle.text() == "Serve this model"
    panel.toggle.click()
    try:
        assert panel.toggle.isChecked() and panel.toggle.text() == "Stop serving" and panel.url
        assert panel.examples.lineWrapMode() == QPlainTextEdit.NoWrap
        block = panel.examples.document().firstBlock()
        assert block.text().startswith("curl " + panel.url)
        while block.isValid():  # every line of code is one line on screen: copied, it runs
            assert block.layout().lineCount() == 1, block.text()
            block = block.next()
        assert panel.examples.horizontalScrollBar().maximum() > 0
    finally:
        panel.toggle.click()
    assert not panel.toggle.isChecked() and panel.toggle.text() == "Serve this model"
    assert panel.status.text() == "Not serving" and not panel.url


def test_serving_without_a_model_says_so_and_stays_off(qtbot):
    from playground.ui.controllers.model_in_hand import CurrentModel
    from playground.ui.views.serve_panel import ServePanel
    panel = ServePanel(CurrentModel())
    qtbot.addWidget(panel)
    panel.resize(300, 400)
    panel.show()
    width = panel.minimumSizeHint().width()
    panel.toggle.click()
    assert not panel.toggle.isChecked() and panel.toggle.text() == "Serve this model"
    assert panel.status.text().startswith("There is no model yet")
    panel.status.setText("Cannot listen on port 8000: " + "a very long reason " * 30)
    assert panel.minimumSizeHint().width() <= width
