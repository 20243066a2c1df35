"""File > Export… offers GGUF beside transformers and ONNX: the path follows the format, and a
GGUF export of the model in hand is written, checked and described as the command line does."""

from types import SimpleNamespace

import pytest

from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model.checkpoint import Checkpoint
from playground.ui.views.export_dialog import ExportDialog
from tests.export.conftest import TEXT, random_model

pytest.importorskip("gguf")


class RunHere:
    """The worker pool, run on the test's thread (GeneratorWorker.work is a plain call)."""

    def launch(self, worker):
        worker.work()


def test_gguf_is_offered_and_the_path_follows_the_format(qtbot, tmp_path):
    dialog = ExportDialog(SimpleNamespace(value=None), RunHere())
    qtbot.addWidget(dialog)
    dialog.out.setText(str(tmp_path / "mine"))
    formats = [dialog.format.itemData(i) for i in range(dialog.format.count())]
    assert formats == ["hf", "onnx", "gguf"]
    dialog.format.setCurrentIndex(2)
    assert dialog.out.text() == str(tmp_path / "mine.gguf")
    dialog.format.setCurrentIndex(1)
    assert dialog.out.text() == str(tmp_path / "mine.onnx")
    dialog.format.setCurrentIndex(0)
    assert dialog.out.text() == str(tmp_path / "mine")


def test_a_gguf_export_from_the_window_is_written_and_described(qtbot, tmp_path, monkeypatch):
    from playground.export import exporter
    monkeypatch.setitem(exporter.VERIFIER, "gguf", "no_such_module_for_gguf")   # gguf's reader: quick
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, activation="gelu_tanh", head_bias=False)
    in_hand = SimpleNamespace(checkpoint=lambda: Checkpoint(model, tokenizer, state={"start_char": "t"}))
    dialog = ExportDialog(SimpleNamespace(value=in_hand), RunHere())
    qtbot.addWidget(dialog)
    dialog.format.setCurrentIndex(2)
    dialog.out.setText(str(tmp_path / "model.gguf"))
    assert dialog.start()
    shown = dialog.result.toPlainText()
    assert (tmp_path / "model.gguf").is_file(), shown
    assert "(llama.cpp gpt2)" in shown and "greedy decoding: the same tokens" in shown
    assert "exact: max |Δ log-probability|" in shown and "checked with gguf's reader" in shown
    assert "from llama_cpp import Llama" in shown
