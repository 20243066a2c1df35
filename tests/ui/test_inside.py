"""The Inside dock: the logit lens, where it is surprised, the embedding map and induction
heads fill from a tiny training run and from an opened model (character and BPE, learned and
rotary positions) and agree with the engine's readings; nothing is read while the dock is hidden."""

import numpy as np
import pytest
import torch

from playground.engine.analysis.interpret import embedding_map, logit_lens, surprise
from playground.engine.config import ModelConfig
from playground.engine.data.bpe import BPETokenizer
from playground.engine.model import checkpoint
from playground.engine.model.gpt import GPT
from playground.ui.views.surprise_view import MAX_CHARS

from .conftest import CORPUS, use_tiny_settings


def _show(window, qtbot, kind):
    """Bring the Inside dock and one of its views to the front; wait for that view's reading."""
    panel = window.inside
    with qtbot.waitSignal(window.inside_ctl.ready, timeout=30_000,
                          check_params_cb=lambda reading: reading.kind == kind):
        window.docks["inside"].raise_tab()
        panel.tabs.setCurrentIndex(list(panel.views).index(kind))
        qtbot.waitUntil(panel.in_sight)
    qtbot.waitUntil(lambda: not window.inside_ctl.busy(kind))


def _read_lens(window, qtbot, prompt):
    window.inside.lens.prompt.setText(prompt)
    qtbot.waitUntil(lambda: not window.inside_ctl.busy("lens"))
    with qtbot.waitSignal(window.inside_ctl.ready, timeout=30_000):
        window.inside.lens.read.click()


def test_nothing_is_read_while_the_dock_is_hidden_then_it_catches_up(window, qtbot):
    use_tiny_settings(window, steps=40, eval_interval=10)
    window.docks["samples"].raise_tab()
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    assert not window.inside.in_sight()
    assert window.inside_ctl.started == 0 and window.inside.lens.lens is None
    _show(window, qtbot, "lens")   # brought into sight: it reads the model in hand once
    assert window.inside_ctl.started == 1 and window.inside.lens.lens is not None


def test_lens_and_learned_position_map_after_a_training_run(window, qtbot):
    use_tiny_settings(window, steps=40, eval_interval=10)
    window.docks["inside"].raise_tab()
    window.inside.tabs.setCurrentIndex(0)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    qtbot.waitUntil(lambda: window.inside.lens.lens is not None, timeout=30_000)
    assert window.inside_ctl.started >= 1   # read at the run's evaluations, the lens tab in sight
    _read_lens(window, qtbot, "the lazy dog")   # the final weights, the prompt cropped to block 8
    view, model, tok = window.inside.lens, window.current.value.snapshot(), window.current.tokenizer
    expected = logit_lens(model, tok, "the lazy dog")
    assert view.grid.rowCount() == model.config.n_layer + 1 == 2
    assert view.grid.columnCount() == len(expected.tokens) == 8 and expected.dropped == 4
    assert [view.grid.horizontalHeaderItem(c).text() for c in range(8)] == list("lazy␣dog")
    for r in range(2):
        for c in range(8):
            assert view.cell_text(r, c) == f"{expected.top[r][c].replace(' ', '␣')} {expected.top_prob[r][c]:.0%}"
    tip = view.grid.item(1, 0).toolTip()   # the hover: what block 1 predicts after 'l', and for 'a'
    assert f"'{expected.top[1][0].replace(' ', '␣')}' with probability {expected.top_prob[1][0]:.1%}" in tip
    assert f"'a', gets {expected.next_prob[1][0]:.1%}" in tip
    _show(window, qtbot, "embeddings")
    shown = window.inside.embeddings
    assert shown.point_count() == tok.vocab_size
    assert len(shown.curve.xData) == model.config.block_size and shown.positions_plot.isVisible()
    again = embedding_map(model, tok, previous=shown.map)   # the same weights: the same frame
    assert np.allclose(shown.map.tokens.points, again.tokens.points, atol=1e-9)


@pytest.fixture
def bpe_rotary_file(tmp_path):
    torch.manual_seed(0)
    tokenizer = BPETokenizer.train(CORPUS, 280)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=16,
                         position="rope")
    model = GPT(config)
    return checkpoint.save(tmp_path / "bpe.safetensors",
                           checkpoint.Checkpoint(model, tokenizer, None, {"start_char": "t", "step": 7}))


def test_an_opened_bpe_rotary_model_fills_every_view(window, qtbot, bpe_rotary_file):
    window.corpus.set_custom_text(CORPUS)
    window.docks["samples"].raise_tab()
    assert window.open_model(str(bpe_rotary_file))
    assert window.inside_ctl.started == 0   # opened out of sight: nothing read yet
    model, tok = window.current.value.snapshot(), window.current.tokenizer

    _show(window, qtbot, "lens")   # an empty prompt: the Generate panel's
    window.generation.prompt.setText("the quick brown fox jumps")
    _read_lens(window, qtbot, "")
    grid = window.inside.lens.grid
    assert grid.rowCount() == 3 and grid.columnCount() == len(tok.encode("the quick brown fox jumps"))

    _show(window, qtbot, "surprise")
    view = window.inside.surprise
    text = window.held_out_text()[1][:MAX_CHARS]
    expected = surprise(model, tok, text)
    assert view.worst == expected.worst(10) and view.list.count() == 10
    assert view.text.toPlainText() == text   # the tokens' pieces join to the text read
    view.list.setCurrentRow(0)   # a listed place: its token selected in the text
    i = view.worst[0]
    assert view.text.textCursor().selectionStart() == view.starts[i] and view.token_at(view.starts[i]) == i
    assert expected.candidates[i][0][0].replace(" ", "␣") in view.tip_for(i)

    _show(window, qtbot, "embeddings")
    maps = window.inside.embeddings
    assert maps.point_count() == tok.vocab_size == 280
    assert not maps.positions_plot.isVisible() and "rotary" in maps.no_positions.text()

    _show(window, qtbot, "induction")
    plot = window.inside.induction
    assert len(plot.curves) == 4 and plot.steps == [7]   # 2 layers x 2 heads, at the file's step


def test_a_prompt_the_model_cannot_read_is_said_in_the_view(window, qtbot):
    use_tiny_settings(window, steps=10, eval_interval=10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    _show(window, qtbot, "lens")
    window.inside.lens.prompt.setText("QQQ")   # no Q in the corpus
    with qtbot.waitSignal(window.inside_ctl.failed, timeout=30_000):
        window.inside.lens.read.click()
    assert "never saw" in window.inside.lens.info.text() and window.last_error == ""


def test_each_view_has_its_paragraph(window):
    panel = window.inside
    window.docks["inside"].raise_tab()
    panel.help_button.setChecked(True)
    for index, kind in enumerate(panel.views):
        panel.tabs.setCurrentIndex(index)
        shown = [k for k, area in panel.helps.items() if not area.isHidden()]
        assert shown == [kind] and len(panel.helps[kind].widget().text()) > 200
    panel.help_button.setChecked(False)
    assert all(area.isHidden() for area in panel.helps.values())


def test_reset_empties_every_view(window, qtbot, bpe_rotary_file):
    window.corpus.set_custom_text(CORPUS)
    assert window.open_model(str(bpe_rotary_file))
    for kind in ("lens", "surprise", "embeddings", "induction"):
        _show(window, qtbot, kind)
    panel = window.inside
    assert panel.lens.grid.rowCount() == 3 and panel.embeddings.point_count() == 280
    assert window.reset_model()
    assert panel.lens.grid.rowCount() == 0 and panel.lens.lens is None
    assert panel.surprise.text.toPlainText() == "" and panel.surprise.list.count() == 0
    assert panel.embeddings.point_count() == 0 and panel.embeddings.labels == [] and panel.embeddings.map is None
    assert panel.induction.steps == [] and panel.induction.curves == []
