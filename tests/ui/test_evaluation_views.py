"""Evaluation in the window: held-out task accuracy drawn beside the loss while a corpus with
tasks trains, the samples show the model's answers, and File > Evaluate scores the model."""

from .conftest import use_tiny_settings


def test_task_accuracy_and_answers_during_training_then_evaluate(window, qtbot, tmp_path):
    use_tiny_settings(window, steps=20, eval_interval=10)
    window.corpus.select("arithmetic")
    assert not window.task_plot.isVisible()
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    steps, accuracy = window.task_plot.points.view()
    assert list(steps) == [10, 20] and all(0 <= a <= 100 for a in accuracy)
    assert window.task_plot.isVisible()
    assert window.samples.samples[-1][1].count("held-out: ⏎") == 4  # four problems, each answered

    dialog = window.show_dialog("evaluate")
    tasks = tmp_path / "tasks.tsv"
    tasks.write_text("\\n1+1=\t2\\n\n\\n2+2=\t4\\n\n")
    dialog.task_source.setCurrentIndex(dialog.task_source.findData("file"))
    with qtbot.waitSignal(window.gen_ctl.evaluationReady, timeout=60_000):
        assert dialog.evaluate(task_file=str(tasks))
    text = dialog.result.toPlainText()
    assert f"Model at step {window.current.step}" in text and "perplexity" in text and "of 2 answered" in text
    tasks.write_text("no tab in this line\n")
    assert not dialog.evaluate(task_file=str(tasks))
    assert "line 1: no tab" in dialog.result.toPlainText()


def test_file_export_writes_a_verified_transformers_folder_and_refuses_a_full_one(window, qtbot, tmp_path):
    dialog = window.show_dialog("export")
    out = tmp_path / "hf"
    dialog.out.setText(str(out))
    assert not dialog.start() and "no model yet" in dialog.result.toPlainText()
    use_tiny_settings(window, steps=10)
    window.settings.spins["width"].setValue(32)  # 28 characters <= width + 1: the head bias folds exactly
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        window.training.train.click()
    assert dialog.start()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=120_000)
    report = dialog.report
    assert report["exact"] and report["max_logprob_error"] < 1e-4 and report["greedy_match"], dialog.result.toPlainText()
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert dialog.progress.value() == 100 and "AutoModelForCausalLM.from_pretrained" in dialog.result.toPlainText()
    # a folder in the way: refused in words, and what is there is kept
    before = sorted(p.name for p in out.iterdir())
    assert dialog.start()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=60_000)
    assert dialog.report == {} and "not exported" in dialog.result.toPlainText()
    assert sorted(p.name for p in out.iterdir()) == before
