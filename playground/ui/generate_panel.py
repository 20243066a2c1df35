"""Generation: a prompt, temperature, top-k, top-p, length and seed; Generate, Stop and the
temperature sweep; the output appears character by character (buffered, flushed on a short
timer). It shows the GenerationController and reads the model in hand for its vocabulary."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from playground.engine.config import SampleConfig
from playground.ui.current import CurrentModel
from playground.ui.generation import GenerationController
from playground.ui.odds_view import OddsView, tint
from playground.ui.sweep_view import TEMPERATURES
from playground.ui.widgets import named

FLUSH_MS = 40


class GeneratePanel(QWidget):
    def __init__(self, control: GenerationController, current: CurrentModel,
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.control, self.current = control, current
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
        self.prompt.returnPressed.connect(self.start)
        self.generate.clicked.connect(self.start)
        self.stop.clicked.connect(control.stop)
        self.sweep.clicked.connect(self.start_sweep)
        self.odds.branchRequested.connect(self.branch)
        self.output.cursorPositionChanged.connect(self._clicked)
        control.tokenGenerated.connect(self.append)
        control.generationEnded.connect(self.end)
        control.sweepEnded.connect(self._sweep_ended)
        current.changed.connect(self._model_changed)
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

    @Slot()
    def _model_changed(self) -> None:
        tokenizer = self.current.tokenizer
        if tokenizer is not None:
            self.top_k.setMaximum(tokenizer.vocab_size)
        self._check_prompt(self.prompt.text())

    @Slot(str)
    def _check_prompt(self, text: str) -> None:
        tokenizer = self.current.tokenizer
        message = tokenizer.encode_lenient(text).message if tokenizer is not None else ""
        self.notice.setText(message[:1].upper() + message[1:])
        self.notice.setVisible(bool(message))

    # -- actions ------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """Generate from the prompt's known characters with the settings shown."""
        prompt = None if self.control.generating else self.control.usable_prompt(self.prompt.text())
        if prompt is None:
            return
        self.begin(prompt)
        self.set_running(True)
        self.control.generate(prompt, self.sample_config())

    @Slot()
    def start_sweep(self) -> None:
        prompt = None if self.control.generating else self.control.usable_prompt(self.prompt.text())
        if prompt is None:
            return
        self.set_running(True)
        self.control.sweep(prompt, TEMPERATURES, self.sample_config())

    @Slot(int, str)
    def branch(self, position: int, char: str) -> None:
        """Put another character at this position of the output and continue from there."""
        self.prompt.setText(self.text()[:position] + char)
        self.start()

    @Slot()
    def _sweep_ended(self) -> None:
        self.set_running(False)

    def attention_text(self) -> str:
        """What the attention view looks at: the selected output, else the prompt, else all."""
        return self.output.textCursor().selectedText() or self.prompt.text() or self.text()

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
        """token = (char, probability, candidates), as the controller emits it."""
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

    @Slot()
    def end(self) -> None:
        self.flush()
        self.timer.stop()
        self.set_running(False)

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
