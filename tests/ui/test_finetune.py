"""Run > Fine-tune… on a real tiny base: the original text's loss on the plot from the evaluation
before the first step, the forgetting hint, a full and a LoRA run compared on one chart, the
trainable share (by formula, checked against peft's adapters), characters the base never saw
named and left out only when asked, replay without a known original text, Stop, and a model
in hand that is ordinary, generates, and is not lost without a question."""

import copy
import dataclasses

import pytest

from playground.engine.config import AdaptConfig, ModelConfig, TrainConfig
from playground.engine.model import checkpoint
from playground.engine.model.lora import add_adapters, has_adapters, trainable
from playground.engine.training.prepare import prepare_run
from playground.ui.controllers.adaptation import trainable_share

OLD = "the cat sat on the mat. " * 40     # what the base learned
NEW = "a mat sat on the cat. " * 40       # the same characters, another text
BASE = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16)


@pytest.fixture(scope="module")
def trained_base():
    trainer = prepare_run("old", OLD, BASE, TrainConfig(batch_size=16, max_steps=100, learning_rate=1e-2, min_lr=1e-2,
                                                        eval_interval=50, eval_batches=4, sample_chars=0, threads=1))
    list(trainer.run())
    return trainer.checkpoint()


@pytest.fixture
def base_file(trained_base, tmp_path):
    return str(checkpoint.save(tmp_path / "old.safetensors", trained_base))


def form_for(window, path, text=NEW, method="full", steps=40, lr=1e-2, rank=4, replay=0.0):
    """The model file opened, the new text in the corpus box, the form filled in."""
    assert window.open_model(path)
    window.corpus.set_custom_text(text)
    form = window.show_dialog("finetune")
    fields = {k: w for k, (_, w) in form.fields.items()}
    fields["method"].setCurrentIndex(fields["method"].findData(method))
    for key, value in (("steps", steps), ("lr", lr), ("eval_interval", 10), ("rank", rank), ("replay", replay)):
        fields[key].setValue(value)
    return form


def finetune(window, qtbot, form):
    with qtbot.waitSignal(window.trainingFinished, timeout=60_000):
        assert form.request_start()


def test_a_full_fine_tune_plots_the_original_text_from_step_0_and_says_it_forgets(window, qtbot, base_file):
    form = form_for(window, base_file)
    assert form.start.isEnabled() and "kept with the model: old" in form.original.itemText(0)
    n = trainable(checkpoint.load(base_file).model)[1]
    assert form.share.text() == f"{n:,} of {n:,} parameters train (100.00%)"
    finetune(window, qtbot, form)
    plot = window.plot
    steps, losses = plot.original.view()
    assert list(steps) == [0, 10, 20, 30, 40] and list(plot.val.view()[0]) == [0, 10, 20, 30, 40]
    assert losses[-1] > 1.1 * losses[0]  # the base's own text, forgotten: measured, not assumed
    assert "original text" in plot.legend.text() and "validation: new text" in plot.legend.text()
    assert plot.original_points.xData[0] == 0
    hint = window.health.hint.text()
    assert hint.startswith("Forgetting") and f"{losses[0]:.3f}" in hint and "LoRA" in hint
    assert window.train_ctl.trainable == (n, n)
    assert window.current.unsaved and window.current.value.checkpoint().state["original"]["name"] == "old"


def test_full_and_lora_compare_on_one_chart_and_lora_ends_an_ordinary_model(window, qtbot, base_file):
    form = form_for(window, base_file)
    finetune(window, qtbot, form)
    assert not form.isVisible()
    form = window.show_dialog("finetune")
    assert form.start_from.isVisible()  # the base of the last fine-tune, to compare methods
    form.start_from.setCurrentIndex(form.start_from.findData(True))
    form.fields["method"][1].setCurrentIndex(form.fields["method"][1].findData("lora"))
    window.ask.answer = "discard"
    asked = len(window.ask.questions)
    finetune(window, qtbot, form)
    assert len(window.ask.questions) == asked + 1  # the full fine-tune in hand was not saved
    lora_trains, total = window.train_ctl.trainable
    assert 0 < lora_trains < total / 5 and form.share.text().endswith(f"({lora_trains / total:.2%})")
    full = window.plot.runs[-1]
    assert full.tag == "full" and len(full.extras) == 2  # its new-text and original-text curves stay
    assert [list(c.xData) for c in full.extras] == [[0, 10, 20, 30, 40]] * 2
    assert "full" in window.plot.legend.text() and "LoRA rank 4" in window.plot.legend.toolTip()
    assert list(window.plot.original.view()[0]) == [0, 10, 20, 30, 40]  # the LoRA run's own
    value = window.current.value
    assert not has_adapters(value.checkpoint().model) and not has_adapters(value.snapshot())
    window.generation.prompt.setText("a ")
    window.generation.length.setValue(30)
    with qtbot.waitSignal(window.generationFinished, timeout=30_000):
        window.generate_now()
    assert window.generation.text().startswith("a ") and len(window.generation.text()) == 32
    window.ask.answer = "cancel"
    assert not window.reset_model() and "not saved" in window.ask.questions[-1][0]
    assert not window.close() and window.current.value is value


def test_unknown_characters_are_named_and_left_out_only_when_asked(window, qtbot, base_file):
    form = form_for(window, base_file, text=NEW + "QZ!" * 20, steps=5)
    assert not form.start.isEnabled() and not form.request_start()
    assert "3 characters the model never saw" in form.unknown.text()
    assert all(repr(c) in form.unknown.text() for c in "QZ!") and "Leave them out" in form.problem.text()
    form.drop.setChecked(True)
    assert form.start.isEnabled()
    finetune(window, qtbot, form)
    assert window.current.value.trainer.corpus.text == NEW  # exactly the new text without them


def test_replay_without_a_known_original_text_asks_for_it(window, qtbot, trained_base, tmp_path):
    anonymous = dataclasses.replace(trained_base, state={**trained_base.state, "original": None,
                                                         "corpus": "pasted text"})
    path = str(checkpoint.save(tmp_path / "anonymous.safetensors", anonymous))
    form = form_for(window, path, steps=5, replay=0.25)
    assert not form.start.isEnabled() and form.problem.text().startswith("Replay needs the model's original text")
    assert "not known" in form.original.itemText(0) and form.replay_off.isVisible()
    form.replay_off.click()
    assert form.start.isEnabled() and "not measured" in form.note.text()
    form.fields["replay"][1].setValue(0.25)
    original = tmp_path / "old.txt"
    original.write_text(OLD)
    assert form.choose_original_file(str(original)) and form.start.isEnabled() and not form.note.text()
    finetune(window, qtbot, form)
    assert window.plot.original.n == 2  # step 0 and step 5: measured on the file named


def test_stop_keeps_what_the_fine_tune_learned(window, qtbot, base_file):
    form = form_for(window, base_file, steps=100_000, lr=3e-3)
    window.train_ctl.stepped.connect(lambda ev: ev.step >= 12 and window.train_ctl.stop())
    finetune(window, qtbot, form)
    assert window.training.status.text().startswith("Stopped") and window.current.unsaved
    kept = window.current.value.checkpoint()  # the best weights of the steps it made, not the base's
    assert 12 <= kept.state["step"] <= kept.state["trained_to"] < 1000
    assert kept.state["val_loss"] < window.plot.val.y[0]  # below the new text's loss before step 1


@pytest.mark.parametrize("targets", [None, "attn.c_attn,mlp.c_proj"])
def test_the_shown_share_is_what_peft_trains(targets):
    adapt = AdaptConfig(method="lora", rank=3, **({"targets": targets} if targets else {}))
    model_cfg = ModelConfig(n_layer=2, n_head=2, n_embd=24, block_size=8, vocab_size=11)
    from playground.engine.model.gpt import GPT
    model = GPT(model_cfg)
    assert trainable_share(model_cfg, model.num_params(), adapt) == trainable(add_adapters(copy.deepcopy(model), adapt))
