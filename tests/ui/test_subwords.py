"""The window with a byte-level BPE model: the settings count the corpus's tokens off the GUI
thread, a run trains on subwords, and everything that shows tokens shows them per token."""

import math

import numpy as np

from playground.engine.data.bpe import BPETokenizer

from .conftest import use_tiny_settings

TEXT = ("the café serves crème brûlée; the cat naps. " * 30
        + "thé, naïve, façade, jalapeño. " * 10)


def _bpe_settings(window, qtbot, vocab=300, steps=40):
    use_tiny_settings(window, steps=steps, text=TEXT)
    window.settings.bpe_vocab.setValue(vocab)
    with qtbot.waitSignal(window.settings.tokensCounted, timeout=30_000):
        window.settings.tokenizer.setCurrentIndex(window.settings.tokenizer.findData("bpe"))


def test_settings_count_the_corpus_in_bpe_tokens(window, qtbot):
    use_tiny_settings(window, text=TEXT)
    label = window.settings.token_label
    assert f"{len(TEXT):,} tokens, 1 character each" in label.text()
    assert not window.settings.bpe_vocab.isEnabled()
    _bpe_settings(window, qtbot, vocab=300)
    expected = BPETokenizer.train(TEXT[: int(len(TEXT) * 0.9)], 300)
    tokens = len(expected.encode_array(TEXT))
    assert tokens < len(TEXT) * 0.8  # merges make tokens longer than a character
    assert f"{tokens:,} BPE tokens (a vocabulary of {expected.vocab_size:,})" in label.text()
    assert f"{len(TEXT) / tokens:.2f} characters per token" in label.text()
    assert window.settings.model_config().vocab_size == expected.vocab_size
    train = window.settings.train_config()
    assert (train.tokenizer, train.bpe_vocab) == ("bpe", 300)
    assert window.settings.bpe_vocab.isEnabled()


def test_a_bpe_run_trains_and_writes_per_token(window, qtbot):
    _bpe_settings(window, qtbot, vocab=300, steps=40)
    window.settings.no_head_bias.setChecked(True)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    model = window.current.value
    assert model.tokenizer.kind == "bpe" and model.config.vocab_size == model.tokenizer.vocab_size
    assert not model.config.head_bias and model.snapshot().lm_head.bias is None
    assert window.generation.next_char.text() == "Next token"

    # the plot in bits per character: the same points, scaled by the run's characters per token
    plot = window.plot
    plot.redraw()
    nats = plot.smooth_curve.yData.copy()
    plot.unit.setCurrentIndex(1)
    plot.redraw()
    assert np.allclose(plot.smooth_curve.yData, nats * plot.data.to_bpc)
    assert plot.data.to_bpc < 1 / math.log(2)  # several characters a token: fewer bits each
    assert "bits/char" in plot.guess_line.label.format

    panel = window.generation
    panel.prompt.setText("the ")
    panel.length.setValue(40)
    with qtbot.waitSignal(window.generationFinished, timeout=60_000):
        panel.generate.click()
    text = panel.text()
    assert text.startswith("the ") and len(text) == 4 + 40
    # each written token covers its own span of the output, in order, from the prompt's end
    starts = panel.typewriter.starts
    assert starts[0] == 4 and starts == sorted(starts)
    assert "".join(t[0] for t in panel.tokens) == text[4:]
    longest = max(range(len(panel.tokens)), key=lambda i: len(panel.tokens[i][0]))
    start = starts[longest]
    for position in range(start, start + len(panel.tokens[longest][0])):
        assert panel.select_position(position)  # any character of a token shows its odds
        assert panel.odds.title.text().startswith(f"Position {start}:")
    assert not panel.select_position(2)  # the prompt has no odds
    labels = [label for label, _ in panel.odds.shown_probabilities()]
    assert labels == [c[0] for c in panel.tokens[longest][2][:len(labels)]]


def test_a_byte_fragment_cannot_be_branched_from(window, qtbot):
    from PySide6.QtWidgets import QListWidgetItem
    _bpe_settings(window, qtbot, vocab=260, steps=5)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    panel = window.generation
    panel.prompt.setText("caf")
    with qtbot.waitSignal(window.generationFinished, timeout=60_000):
        panel.generate.click()
    assert panel.select_position(3)
    tokenizer = window.current.tokenizer
    fragment = next(i for i in range(tokenizer.vocab_size) if tokenizer.label(i).startswith("<0x"))
    item = QListWidgetItem()
    item.setData(256, tokenizer.label(fragment))
    item.setData(257, "")
    before = panel.text()
    with qtbot.waitSignal(panel.odds.refused, timeout=5_000) as refused:
        panel.odds._branch(item)
    assert "only part of a character" in refused.args[0]
    assert panel.notice.isVisible() and "only part of a character" in panel.notice.text()
    assert panel.text() == before and not window.gen_ctl.generating


def test_attention_axes_show_token_labels(window, qtbot):
    _bpe_settings(window, qtbot, vocab=300, steps=5)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    window.generation.prompt.setText("the café")
    with qtbot.waitSignal(window.gen_ctl.attentionReady, timeout=30_000):
        window.attention.refresh.click()
    tokenizer = window.current.tokenizer
    ids = tokenizer.encode_lenient("the café").ids
    assert window.attention.chars == [tokenizer.label(i) for i in ids]
    assert "".join(window.attention.chars) == "the café" and len(ids) < len("the café")
