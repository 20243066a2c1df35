"""Preferences on a real tiny model: keys pick the better of two continuations (ties and skips
counted, no pair), typing in the prompt picks nothing, the set is edited, saved and opened again
(a bad file's message names its line and loses nothing), an unsaved set is not lost on closing,
and Tune by preference runs DPO on a worker and makes its model the model in hand."""

import json

import pytest
import torch
from PySide6.QtCore import Qt

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.model import checkpoint
from playground.engine.training.pairs import Pair, read_pairs, write_pairs
from playground.engine.training.prepare import prepare_run
from tests.ui.conftest import Answers

TEXT = "the cat sat on the mat. " * 40
BASE = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    trainer = prepare_run("cats", TEXT, BASE, TrainConfig(batch_size=8, max_steps=30, learning_rate=1e-2, min_lr=1e-2,
                                                          eval_interval=30, eval_batches=2, sample_chars=0, threads=1))
    list(trainer.run())
    return str(checkpoint.save(tmp_path_factory.mktemp("base") / "cats.safetensors", trainer.checkpoint()))


def rating(window, qtbot, base_path, prompt="the "):
    """The model opened, Preferences in front, two continuations shown."""
    assert window.open_model(base_path)
    window.docks["preferences"].raise_tab()
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5000)
    panel = window.preferences
    panel.prompt.setFocus()
    panel.prompt.setText(prompt)
    with qtbot.waitSignal(window.pref_ctl.shown, timeout=10_000):
        qtbot.keyClick(panel.prompt, Qt.Key_Return)
    return panel


def next_two(qtbot, window, panel, key):
    """Press a choice's key; the next two continuations appear."""
    with qtbot.waitSignal(window.pref_ctl.shown, timeout=10_000):
        qtbot.keyClick(panel.prompt, key, Qt.AltModifier)


def test_keys_make_pairs_and_ties_and_skips_add_none(window, qtbot, base_path):
    panel = rating(window, qtbot, base_path)
    prompt, left, right = panel.shown
    assert prompt == "the " and left != right and 0 < len(left) <= BASE.block_size + 1 - len(prompt)
    assert panel.left.toPlainText() == prompt + left and panel.right.toPlainText() == prompt + right
    next_two(qtbot, window, panel, Qt.Key_1)
    assert window.pref_set.pairs == [Pair("the ", left, right)]
    _, left2, right2 = panel.shown
    assert (left2, right2) != (left, right)   # the next two seeds
    next_two(qtbot, window, panel, Qt.Key_2)
    assert window.pref_set.pairs[-1] == Pair("the ", right2, left2)
    next_two(qtbot, window, panel, Qt.Key_T)
    next_two(qtbot, window, panel, Qt.Key_S)
    s = window.pref_set
    assert (len(s.pairs), s.ties, s.skips) == (2, 1, 1) and s.unsaved
    assert panel.list.counts.text().startswith("2 pairs, 1 tie, 1 skipped")
    assert panel.list.table.rowCount() == 2 and panel.list.table.item(1, 1).text() == right2.replace("\n", "\\n")
    qtbot.keyClicks(panel.prompt, "12ts")   # plain keys type: they pick nothing
    assert panel.prompt.text() == "the 12ts" and len(s.pairs) == 2


def test_the_set_is_edited_saved_and_opened_again(window, qtbot, tmp_path):
    s, panel = window.pref_set, window.preferences.list
    for i in range(3):
        s.add(f"p{i}\n", f"good {i}\n", f"bad {i}")
    panel.table.item(0, 1).setText("better\\nanswer")   # a cell shows a newline as \n
    assert s.pairs[0].chosen == "better\nanswer"
    panel.table.item(1, 2).setText("good 1\\n")   # the same as chosen: refused, the cell restored
    assert s.pairs[1].rejected == "bad 1" and panel.table.item(1, 2).text() == "bad 1"
    assert "the same text" in panel.pairs_problem.text()
    panel.table.selectRow(2)
    panel.delete.click()
    assert [p.prompt for p in s.pairs] == ["p0\n", "p1\n"]
    path = tmp_path / "set.jsonl"
    assert panel.save_set(str(path)) and not s.unsaved
    assert [p.to_dict() for p in read_pairs(path)] == [p.to_dict() for p in s.pairs]
    kept = list(s.pairs)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                   + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    assert not panel.open_set(str(bad))
    assert "bad.jsonl, line 2" in panel.pairs_problem.text() and "'rejected'" in panel.pairs_problem.text()
    assert s.pairs == kept and s.path == path   # nothing lost
    s.add("x", "y", "z")
    window.ask.answer = "cancel"
    assert not panel.open_set(str(path)) and len(s.pairs) == 3   # unsaved: asked, cancelled
    assert "not saved" in window.ask.questions[-1][0]
    window.ask.answer = "discard"
    assert panel.open_set(str(path)) and s.pairs == kept and not s.unsaved


def test_closing_with_an_unsaved_set_asks(window):
    window.pref_set.add("a", "b", "c")
    window.ask.answer = "cancel"
    assert not window.close()
    assert window.ask.questions[-1][0] == "The preference set (1 pair) is not saved."
    window.ask.answer = "discard"
    assert window.close()


def test_tuning_runs_on_a_worker_and_its_model_replaces_the_one_in_hand(window, qtbot, base_path, tmp_path):
    pairs = [pair for c in "tmoa" for pair in
             (Pair("the ", "cat sat on", f"mat {c}{c}t"), Pair("the c", "at sat", f"{c}{c}at mat"))]
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    assert window.open_model(base_path)
    assert window.preferences.list.open_set(str(tmp_path / "pairs.jsonl"))
    before = window.current.value
    form = window.show_tune_form()
    f = {k: w for k, (_, w) in form.fields.items()}
    f["batch"].setValue(64)
    with qtbot.waitSignal(window.tuningFinished, timeout=30_000):
        assert form.request_start()
    assert "fewer than a batch of 64" in window.last_error and "fewer than a batch" in form.problem.text()
    assert window.current.value is before   # a failed run replaces nothing
    for key, value in (("batch", 4), ("steps", 10), ("eval_interval", 5), ("lr", 0.01)):
        f[key].setValue(value)
    with qtbot.waitSignal(window.tuningFinished, timeout=30_000):
        assert form.request_start()
    tuned = window.current.value
    assert tuned is not before and window.current.unsaved and tuned.ckpt.state["preference"]["steps"] == 10
    assert not all(torch.equal(a, b) for a, b in zip(before.ckpt.model.parameters(), tuned.ckpt.model.parameters()))
    plot = window.preferences.plot
    assert list(plot.series["held_accuracy"].view()[0]) == [0, 5, 10]
    assert plot.series["loss"].view()[1][-1] < plot.series["loss"].view()[1][0]
    assert plot.series["original"].n == 3   # the base keeps its text: what the tuning costs is measured
    assert window.preferences.tune_status.text().startswith("Tuned after 10 steps")
    window.ask.answer = "cancel"   # the tuned model is not saved: closing asks about it
    window.pref_set.unsaved = False
    assert not window.close() and "before closing" in window.ask.questions[-1][0]


def test_a_pair_the_model_cannot_read_is_named_and_closing_during_a_tune_asks(window, qtbot, base_path, tmp_path):
    assert window.open_model(base_path)
    s = window.pref_set
    for i in range(6):
        s.add("the ", "cat", f"mat{'Q' if i == 4 else ''}")
    form = window.show_tune_form()
    form.fields["batch"][1].setValue(2)
    with qtbot.waitSignal(window.tuningFinished, timeout=30_000):
        assert form.request_start()
    assert "the preference set, pair 5: characters the model never saw ('Q')" in window.last_error
    s.remove(4)
    s.unsaved = False   # as if saved: the question asked is the run's
    form.fields["steps"][1].setValue(100_000)
    window.pref_ctl.stepped.connect(lambda ev: ev.step == 3 and window.close())
    window.ask = Answers("cancel")
    with qtbot.waitSignal(window.pref_ctl.stepped, timeout=30_000, check_params_cb=lambda ev: ev.step == 5):
        assert form.request_start()
    assert window.ask.questions[-1][0] == "Tuning by preference is running." and window.pref_ctl.tuning
    window.ask.answer = "discard"
    with qtbot.waitSignal(window.tuningFinished, timeout=30_000):
        assert window.close()
    assert window.current.value.ckpt.state.get("preference") is None   # closed: the run was dropped


def test_stop_ends_the_run_after_a_step_and_keeps_what_it_tuned(window, qtbot, base_path):
    assert window.open_model(base_path)
    for i in range(4):
        window.pref_set.add("the ", "cat sat", f"mat {'tmoa'[i]}")
    form = window.show_tune_form()
    for key, value in (("batch", 2), ("steps", 100_000), ("eval_interval", 1000), ("heldout", 0.0)):
        form.fields[key][1].setValue(value)
    panel = window.preferences
    window.pref_ctl.stepped.connect(lambda ev: ev.step == 3 and panel.stop.click())
    with qtbot.waitSignal(window.tuningFinished, timeout=30_000):
        assert form.request_start()
    assert panel.stop.isEnabled() is False and panel.tune.isEnabled()
    steps = window.current.value.ckpt.state["preference"]["steps"]
    assert 3 <= steps < 1000 and panel.tune_status.text().startswith(f"Stopped after {steps} steps")
    assert window.preferences.plot.series["loss"].view()[0][-1] == steps   # what it tuned, scored
