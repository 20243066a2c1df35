"""Serve this model: the same OpenAI-compatible server as `python -m playground serve`, started
on a copy of the model in hand, on 127.0.0.1. It shows the address and examples to copy (never
wrapped, so what is copied runs as shown), and stops cleanly when switched off or when the app
closes."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget

from playground.ui.views.widgets import Message, named

MODEL_NAME = "playground"
START, STOP = "Serve this model", "Stop serving"


class ServePanel(QWidget):
    def __init__(self, current, parent: Optional[QWidget] = None):
        """current: the model in hand (CurrentModel); the server gets a copy of it."""
        super().__init__(parent)
        self.current = current
        self.server = None
        self.url = ""
        self.toggle = named(QPushButton(START), "serveToggle", START,
                            "Start an OpenAI-compatible HTTP server on this computer for a copy of the "
                            "model in hand; press again to stop it")
        self.toggle.setCheckable(True)
        self.port = named(QSpinBox(), "servePort", "Port", "The port to listen on (any free one: 0)")
        self.port.setRange(0, 65535)
        self.port.setValue(8000)
        self.port.setSpecialValueText("any free port")
        self.status = named(Message("Not serving", lines=3), "serveStatus", "Server status",
                            "Where the server listens")
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.examples = named(QPlainTextEdit(), "serveExamples", "Examples",
                              "A curl command and an openai client call for this server, to copy "
                              "(scroll sideways for the rest of a line)")
        self.examples.setReadOnly(True)
        self.examples.setLineWrapMode(QPlainTextEdit.NoWrap)  # a wrapped line copies as two
        font = QFont("monospace")
        font.setStyleHint(QFont.Monospace)
        self.examples.setFont(font)
        row = QHBoxLayout()
        row.addWidget(self.toggle)
        row.addWidget(QLabel("Port"))
        row.addWidget(self.port)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.examples, 1)
        self.toggle.toggled.connect(self._toggled)

    @Slot(bool)
    def _toggled(self, on: bool) -> None:
        if on:
            problem = self.start()
            if problem:
                self.status.setText(problem)
        else:
            self.stop()
        self._show_serving(self.server is not None)

    def _show_serving(self, serving: bool) -> None:
        """The toggle says what pressing it does next."""
        self.toggle.blockSignals(True)
        self.toggle.setChecked(serving)
        self.toggle.blockSignals(False)
        self.toggle.setText(STOP if serving else START)
        self.toggle.setAccessibleName(STOP if serving else START)

    def start(self) -> str:
        """Serve a copy of the model in hand; returns what went wrong, or ''."""
        model = self.current.value
        if model is None:
            return "There is no model yet: train one (or open a saved model) first"
        try:
            import uvicorn  # noqa: F401

            from playground.serve.api import Served, Settings
            from playground.serve.lifecycle import Server, attach_model, listen
        except ImportError as exc:
            return f"Serving needs the serve extra ({exc.name} is missing): pip install 'gpt-playground-studio[serve]'"
        from playground.engine.errors import PlaygroundError
        try:
            sock = listen("127.0.0.1", self.port.value())
        except PlaygroundError as exc:
            return f"Cannot serve: {exc}"
        served = Served(Settings(model_name=MODEL_NAME))
        attach_model(served, model.snapshot(), model.tokenizer, model.start_char, 8, 64)
        self.server = Server(served, sock).start()
        self.url = f"{self.server.url}/v1"
        self.status.setText(f"Serving a copy of the model at step {model.step:,} on {self.url} "
                            "(this computer only); training on does not change it")
        self.examples.setPlainText(examples(self.url, MODEL_NAME))
        self.port.setEnabled(False)
        return ""

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop listening, let the requests in flight end, and stop the engine."""
        if self.server is not None:
            self.server.stop(wait_s)
        self.server = None
        self.url = ""
        self.port.setEnabled(True)
        self.status.setText("Not serving")
        self._show_serving(False)


def examples(url: str, model: str) -> str:
    return (f"curl {url}/completions -H 'Content-Type: application/json' \\\n"
            f"  -d '{{\"model\": \"{model}\", \"prompt\": \"to be \", \"max_tokens\": 40}}'\n\n"
            "from openai import OpenAI\n"
            f"client = OpenAI(base_url=\"{url}\", api_key=\"unused\")\n"
            f"for chunk in client.completions.create(model=\"{model}\", prompt=\"to be \",\n"
            "                                        max_tokens=40, stream=True):\n"
            "    print(chunk.choices[0].text, end=\"\", flush=True)\n")
