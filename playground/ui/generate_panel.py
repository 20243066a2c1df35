"""Generation: a prompt, temperature, top-k, top-p, length and seed; Generate and Stop; the
output appears character by character (buffered, flushed on a short timer)."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QTimer, Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget)

from playground.engine.config import SampleConfig
from playground.ui.odds_view import OddsView, tint
from playground.ui.widgets import named

FLUSH_MS = 40


class GeneratePanel(QWidget):
    generateRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._vocabulary: Optional[set[str]] = None
        self._pending: list[tuple] = []
        self.tokens: list[tuple] = []   # (char, probability, candidates) per generated character
        self.prompt_length = 0
        self.flushes = 0
        self.prompt = named(QLineEdit(), "promptEdit", "Prompt",
                            "Text for the model to continue; empty starts from the corpus's first character")
        self.prompt.setPlaceholderText("Prompt (may be empty)")
        self.temperature = named(QSlider(Qt.Horizontal), "temperatureSlider", "Temperature",
                                 "Temperature: 0 always picks the likeliest character (greedy); "
                                 "1 samples the model's own odds; above 1 gets wilder")
        self.temperature.setRange(0, 200)
        self.temperature.setValue(80)
        self.temperature_label = named(QLabel(), "temperatureValue", "Temperature value",
                                       "The temperature the slider is set to")
        self.temperature_label.setMinimumWidth(90)
        self.top_k = named(QSpinBox(), "topKSpin", "Top-k",
                           "Top-k: choose only among the k likeliest characters (0 means all)")
        self.top_k.setRange(0, 100_000)
        self.top_k.setSpecialValueText("all")
        self.top_p = named(QDoubleSpinBox(), "topPSpin", "Top-p",
                           "Top-p: choose among the likeliest characters whose odds add up to p (1 means all)")
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(1.0)
        self.length = named(QSpinBox(), "lengthSpin", "Characters to generate",
                            "How many characters to generate")
        self.length.setRange(1, 100_000)
        self.length.setValue(300)
        self.seed = named(QSpinBox(), "sampleSeedSpin", "Sampling seed",
                          "The same seed, prompt and settings give the same text")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(1337)
        self.generate = named(QPushButton("Generate"), "generateButton", "Generate",
                              "Write text with the current model (also works while training)")
        self.stop = named(QPushButton("Stop"), "stopGenerateButton", "Stop generating",
                          "Stop writing")
        self.output = named(QPlainTextEdit(), "outputView", "Generated text",
                            "What the model wrote: your prompt, then its characters as they come")
        self.output.setReadOnly(True)
        self.output.setFont(QFont("monospace"))
        self.odds = OddsView()
        self.sweep = named(QPushButton("Temperature sweep"), "sweepButton", "Temperature sweep",
                           "Generate from the same prompt and seed at several temperatures, side by side")
        self.notice = named(QLabel(), "promptNotice", "Prompt notice",
                            "Characters of the prompt the model never saw")
        self.notice.setStyleSheet("color: #a15c00;")
        self.notice.setWordWrap(True)
        self.notice.hide()

        grid = QGridLayout()
        grid.addWidget(QLabel("Temperature"), 0, 0)
        grid.addWidget(self.temperature, 0, 1, 1, 3)
        grid.addWidget(self.temperature_label, 0, 4)
        grid.addWidget(QLabel("Top-k"), 1, 0)
        grid.addWidget(self.top_k, 1, 1)
        grid.addWidget(QLabel("Top-p"), 1, 2)
        grid.addWidget(self.top_p, 1, 3)
        grid.addWidget(QLabel("Length"), 2, 0)
        grid.addWidget(self.length, 2, 1)
        grid.addWidget(QLabel("Seed"), 2, 2)
        grid.addWidget(self.seed, 2, 3)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate)
        buttons.addWidget(self.stop)
        buttons.addWidget(self.sweep)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.prompt)
        layout.addWidget(self.notice)
        layout.addLayout(grid)
        layout.addLayout(buttons)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.odds)

        self.temperature.valueChanged.connect(self._show_temperature)
        self.prompt.textChanged.connect(self._check_prompt)
        self.prompt.returnPressed.connect(self.generateRequested)
        self.generate.clicked.connect(self.generateRequested)
        self.stop.clicked.connect(self.stopRequested)
        self.output.cursorPositionChanged.connect(self._clicked)
        self.timer = QTimer(self, interval=FLUSH_MS)
        self.timer.timeout.connect(self.flush)
        self._show_temperature(self.temperature.value())
        self.set_running(False)

    # -- settings -----------------------------------------------------------------------
    def temperature_value(self) -> float:
        return self.temperature.value() / 100.0

    def sample_config(self) -> SampleConfig:
        return SampleConfig(max_new_chars=self.length.value(), temperature=self.temperature_value(),
                            top_k=self.top_k.value(), top_p=round(self.top_p.value(), 4),
                            seed=self.seed.value())

    @Slot(int)
    def _show_temperature(self, value: int) -> None:
        t = value / 100.0
        self.temperature_label.setText("0 (greedy)" if value == 0 else f"{t:.2f}")

    def set_vocabulary(self, chars: Optional[list[str]]) -> None:
        self._vocabulary = set(chars) if chars else None
        if chars:
            self.top_k.setMaximum(len(chars))
        self._check_prompt(self.prompt.text())

    @Slot(str)
    def _check_prompt(self, text: str) -> None:
        unknown = [] if self._vocabulary is None else sorted({c for c in text if c not in self._vocabulary})
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            self.notice.setText(f"The model never saw {shown}: "
                                + ("they will be dropped" if len(unknown) > 1 else "it will be dropped"))
        self.notice.setVisible(bool(unknown))

    def set_running(self, running: bool, can_generate: bool = True) -> None:
        self.generate.setEnabled(not running and can_generate)
        self.stop.setEnabled(running)

    # -- output -------------------------------------------------------------------------
    def begin(self, shown_prompt: str) -> None:
        self._pending.clear()
        self.tokens.clear()
        self.prompt_length = len(shown_prompt)
        self.output.blockSignals(True)
        self.output.setPlainText(shown_prompt)
        self.output.blockSignals(False)
        self.timer.start()

    def append(self, token: tuple) -> None:
        """token = (char, probability, candidates), as the session emits it."""
        self._pending.append(token)

    @Slot()
    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.output.blockSignals(True)
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.End)
        run, color = [], None
        for token in pending + [None]:  # runs of one tint go in as one insert
            c = None if token is None else tint(token[1])
            if run and c != color:
                fmt = QTextCharFormat()
                fmt.setBackground(QColor(color))
                cursor.insertText("".join(run), fmt)
                run = []
            if token is not None:
                run.append(token[0])
                color = c
        self.output.setTextCursor(cursor)
        self.output.ensureCursorVisible()
        self.output.blockSignals(False)
        self.tokens.extend(pending)
        self.odds.show_token(self.prompt_length + len(self.tokens) - 1, self.tokens[-1])
        self.flushes += 1

    def end(self) -> None:
        self.flush()
        self.timer.stop()

    def text(self) -> str:
        return self.output.toPlainText()

    def select_position(self, position: int) -> bool:
        """Show the odds the model gave at this position of the output (a generated one)."""
        index = position - self.prompt_length
        if 0 <= index < len(self.tokens):
            self.odds.show_token(position, self.tokens[index])
            return True
        return False

    @Slot()
    def _clicked(self) -> None:
        cursor = self.output.textCursor()
        if not cursor.hasSelection():  # the character left of the click
            self.select_position(cursor.position() - 1)
