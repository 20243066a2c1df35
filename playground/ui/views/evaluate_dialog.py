"""File > Evaluate…: score the model in hand (also while it trains) on a text and on task
prompts: loss, perplexity and bits per character; accuracy, with a few wrong answers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from playground.engine.errors import PlaygroundError
from playground.ui.views.widgets import named

NONE, CORPUS, FILE = "none", "corpus", "file"


class EvaluateDialog(QDialog):
    def __init__(self, control, corpus_panel, parent=None):
        """control: the GenerationController that scores; corpus_panel: the text in the window."""
        super().__init__(parent)
        self.setWindowTitle("Evaluate the model")
        self.setObjectName("evaluateDialog")
        self.control, self.corpus = control, corpus_panel
        self.text_source = named(QComboBox(), "evaluateTextPicker", "Text to score",
                                 "The text whose loss, perplexity and bits per character are measured")
        self.text_source.addItem("the corpus in the window", CORPUS)
        self.text_source.addItem("a text file…", FILE)
        self.text_source.addItem("no text", NONE)
        self.task_source = named(QComboBox(), "evaluateTaskPicker", "Tasks",
                                 "Prompts with expected answers (prompt<TAB>expected per line): the score "
                                 "is the share the model's greedy completion gets right")
        self.task_source.addItem("the corpus's held-out tasks", CORPUS)
        self.task_source.addItem("a task file…", FILE)
        self.task_source.addItem("no tasks", NONE)
        self.run = named(QPushButton("Evaluate"), "evaluateButton", "Evaluate",
                         "Score the model in hand now (a copy between training steps, if it trains)")
        self.result = named(QPlainTextEdit(), "evaluateResult", "Evaluation result", "The figures")
        self.result.setReadOnly(True)
        self.result.setFont(QFont("monospace"))
        self.result.setPlaceholderText("Pick a text and tasks, then Evaluate")
        form = QFormLayout()
        form.addRow("Text", self.text_source)
        form.addRow("Tasks", self.task_source)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run)
        layout.addWidget(self.result, 1)
        self.resize(560, 360)
        self.run.clicked.connect(self.evaluate)
        control.evaluationReady.connect(self._ready)
        control.failed.connect(self._failed)

    def _choose(self, title: str, kinds: str) -> Optional[str]:
        path, _ = QFileDialog.getOpenFileName(self, title, "", kinds)
        return path or None

    @Slot()
    def evaluate(self, text_file: Optional[str] = None, task_file: Optional[str] = None) -> bool:
        """Start scoring; files may be given directly (tests, scripts) instead of asked for."""
        from playground.engine.data.corpus import read_text_file
        from playground.engine.data.tasks import builtin_tasks, read_tasks
        try:
            text, label = None, ""
            if self.text_source.currentData() == CORPUS:
                text, label = self.corpus.text(), self.corpus.name()
            elif self.text_source.currentData() == FILE:
                text_file = text_file or self._choose("Text to score", "Text files (*.txt);;All files (*)")
                if text_file is None:
                    return False
                text, label = read_text_file(text_file), Path(text_file).name
            tasks: tuple = ()
            if self.task_source.currentData() == CORPUS:
                tasks = builtin_tasks(self.corpus.name())
                if not tasks and text is None:
                    raise PlaygroundError(f"the corpus {self.corpus.name()!r} brings no held-out tasks: "
                                          "pick a task file")
            elif self.task_source.currentData() == FILE:
                task_file = task_file or self._choose("Task file", "Task files (*.tsv *.txt);;All files (*)")
                if task_file is None:
                    return False
                tasks = tuple(read_tasks(task_file))
        except PlaygroundError as exc:
            self.result.setPlainText(f"Cannot evaluate: {exc}")
            return False
        if text is None and not tasks:
            self.result.setPlainText("Nothing to score: pick a text or tasks")
            return False
        self.result.setPlainText("Scoring…")
        return self.control.evaluate(text, tasks, label)

    @Slot(object)
    def _ready(self, result: dict) -> None:
        lines = [f"Model at step {result['step']:,}"]
        text = result.get("text")
        if text:
            subwords = result.get("unit") == "tokens"
            counted = f"{text['tokens']:,} tokens ({text['characters']:,} characters)" if subwords \
                else f"{text['characters']:,} characters"
            lines.append(f"Text: {result['label']}, {counted} predicted")
            if text["unknown_characters"]:
                shown = ", ".join(repr(c) for c in text["unknown"])
                lines.append(f"  {text['unknown_characters']:,} characters the model never saw were "
                             f"left out of the score ({shown})")
            lines.append(f"  loss {text['loss']:.4f} nats per {'token' if subwords else 'character'}, perplexity "
                         f"{text['perplexity']:.3f}, {text['bits_per_char']:.4f} bits per character")
        tasks = result.get("tasks")
        if tasks:
            lines.append(f"Tasks: {tasks['correct']:,} of {tasks['total']:,} answered "
                         f"({tasks['accuracy']:.1%})")
            for wrong in tasks["failures"]:
                lines.append(f"  wrong: {wrong['prompt']!r} -> {wrong['got']!r} "
                             f"(expected {wrong['expected']!r})")
        self.result.setPlainText("\n".join(lines))

    @Slot(str)
    def _failed(self, message: str) -> None:
        if self.isVisible():
            self.result.setPlainText(message)
