"""File > Export…: the model in hand as a Hugging Face transformers folder, an ONNX file or a GGUF
file (llama.cpp, Ollama), written
and verified on a worker (a copy taken between training steps, if it trains), with what was
written, how closely the export matches the model, and the lines of Python that open it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from playground.ui.controllers.workers import GeneratorWorker
from playground.ui.views.widgets import named

FILE_FORMATS = {"onnx": "ONNX models (*.onnx)", "gguf": "GGUF models (*.gguf)"}   # the others are folders


class ExportDialog(QDialog):
    progressed = Signal(float, str)   # emitted on the worker: (fraction done, stage)

    def __init__(self, current, workers, parent=None):
        """current: the model in hand; workers: the pool the export runs on."""
        super().__init__(parent)
        self.setWindowTitle("Export the model")
        self.setObjectName("exportDialog")
        self.current, self.workers = current, workers
        self._worker = None
        self.format = named(QComboBox(), "exportFormatPicker", "Export format",
                            "A folder that transformers' AutoModelForCausalLM and AutoTokenizer "
                            "open, an ONNX file (with its tokenizer) for ONNX Runtime, or a GGUF file "
                            "(the tokenizer inside) for llama.cpp and Ollama")
        self.format.addItem("Hugging Face transformers folder", "hf")
        self.format.addItem("ONNX file", "onnx")
        self.format.addItem("GGUF file (llama.cpp, Ollama)", "gguf")
        self.out = named(QLineEdit(), "exportOutEdit", "Export to",
                         "Hugging Face: the folder to write (new or empty, unless you replace it). "
                         "ONNX: the .onnx file; its tokenizer goes beside it as NAME.tokenizer.json. "
                         "GGUF: the .gguf file")
        self.out.setText(str(Path.home() / "gpt-playground-export"))
        browse = named(QPushButton("Browse…"), "exportBrowseButton", "Browse", "Choose where to write")
        browse.clicked.connect(self._browse)
        self.force = named(QCheckBox("replace what is there"), "exportForceCheck", "Replace",
                           "Overwrite what is in the way (only once the new export is verified)")
        self.run = named(QPushButton("Export"), "exportButton", "Export",
                         "Write, reload and verify the export, then move it into place")
        self.run.clicked.connect(self.start)
        self.format.currentIndexChanged.connect(self._format_changed)
        self.report: dict = {}
        self.progressed.connect(self._progressed)
        self.progress = named(QProgressBar(), "exportProgress", "Export progress", "How far the export is")
        self.progress.setRange(0, 100)
        self.result = named(QPlainTextEdit(), "exportResult", "Export result",
                            "What was written and how closely it matches the model")
        self.result.setReadOnly(True)
        self.result.setFont(QFont("monospace"))
        self.result.setPlaceholderText("Pick a format and where to write, then Export")
        where = QHBoxLayout()
        where.addWidget(self.out, 1)
        where.addWidget(browse)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Export to", where)
        form.addRow("", self.force)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run)
        layout.addWidget(self.progress)
        layout.addWidget(self.result, 1)
        self.resize(640, 420)

    @Slot()
    def _browse(self) -> None:
        fmt = self.format.currentData()
        if fmt in FILE_FORMATS:
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.out.text(), FILE_FORMATS[fmt])
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into", str(Path(self.out.text()).parent))
        if path:
            self.out.setText(path)

    @Slot()
    def _format_changed(self) -> None:
        """An ONNX or GGUF export is a file: the name follows the format (NAME <-> NAME.onnx, NAME.gguf)."""
        path = Path(self.out.text().strip() or Path.home() / "gpt-playground-export")
        fmt = self.format.currentData()
        self.out.setText(str(path.with_suffix(f".{fmt}" if fmt in FILE_FORMATS else "")))

    @property
    def busy(self) -> bool:
        return self._worker is not None

    @Slot()
    def start(self) -> bool:
        """Export on a worker; False (with the reason shown) when it cannot start."""
        model = self.current.value
        if self.busy:
            return False
        if model is None:
            self.result.setPlainText("There is no model yet: train one (or open a saved model) first.")
            return False
        if not self.out.text().strip():
            self.result.setPlainText("Choose where to export to.")
            return False
        fmt, out, force = self.format.currentData(), self.out.text().strip(), self.force.isChecked()

        def run():
            import tempfile

            from playground.engine.model import checkpoint
            from playground.export import export_model
            with tempfile.TemporaryDirectory(prefix="playground-export-") as tmp:
                ckpt = model.checkpoint()   # a consistent copy, also while training runs
                ckpt.optimizer_state = None
                path = checkpoint.save(Path(tmp) / "model.safetensors", ckpt)
                report = export_model(path, fmt, out, progress, force)
            yield asdict(report)

        progress = self.progressed.emit   # a signal: safe from the worker, only plain values
        self.progress.setValue(0)
        self.result.setPlainText(f"Exporting to {out}…")
        self.run.setEnabled(False)
        worker = self._worker = GeneratorWorker(run, "export")
        worker.yielded.connect(self._done)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.workers.launch(worker)
        return True

    @Slot(float, str)
    def _progressed(self, fraction: float, stage: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(f"%p%: {stage}")

    @Slot(object)
    def _done(self, report: dict) -> None:
        self.report = report
        self.result.setPlainText(describe(report))

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.report = {}
        self.result.setPlainText(f"The model was not exported: {message}")

    @Slot()
    def _finished(self) -> None:
        self._worker = None
        self.run.setEnabled(True)
        self.progress.setValue(100)

    def closeEvent(self, event) -> None:
        event.accept()   # the export goes on; the window's worker pool waits for it on quit


def describe(report: dict) -> str:
    """The report as a person reads it (the CLI prints the same figures)."""
    from playground.export.report import TOLERANCE, ExportReport, load_snippet
    within = "exact" if report["tolerance"] == TOLERANCE else f"within {report['tolerance']:g}"
    match = (within if report["exact"] else "NOT " + within) + f": max |Δ log-probability| {report['max_logprob_error']:.2e}"
    if report["checked_by"]:
        match += f" (checked with {report['checked_by']})"
    if not report["verified"]:
        match = "NOT verified (see the warning)"
    lines = [f"Wrote {report['out']} ({report['architecture']}) in {report['seconds']:.1f} s",
             f"files: {', '.join(report['files'])}", f"verified against the model: {match}",
             "greedy decoding: " + ("the same tokens" if report["greedy_match"] else "DIFFERENT tokens")]
    lines += [f"note: {n}" for n in report["notes"]] + [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines + ["", "Open it with:", *load_snippet(ExportReport(**report))])
