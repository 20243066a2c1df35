"""Generation: a prompt, temperature, top-k, top-p, length and seed; Generate, Stop and the
temperature sweep; the output appears character by character at a pace you choose, or one
character per click of "Next character", which shows the odds of every candidate before the
draw. It shows the GenerationController and reads the model in hand for its vocabulary."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont
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
from playground.ui.controllers.generation_control import GenerationController
from playground.ui.controllers.model_in_hand import CurrentModel
from playground.ui.views.odds_view import OddsView
from playground.ui.views.sweep_view import TEMPERATURES
from playground.ui.views.typewriter import READABLE_PACE, Typewriter
from playground.ui.views.widgets import Message, compact, named

REVEAL_MS = 700  # in step mode, how long the odds show before the draw is made


class GeneratePanel(QWidget):
    finished = Signal()   # a generation has ended and all of it is on screen
    stepped = Signal()    # one character was drawn in step mode and appended

    def __init__(self, control: GenerationController, current: CurrentModel,
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.control, self.current = control, current
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
        self.temperature_label.setMinimumWidth(70)
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
        self.pace = named(QSpinBox(), "paceSpin", "Pace",
                          "Characters written per second, to watch the model write one character "
                          "after another (as fast as it runs: no waiting)")
        self.pace.setRange(0, 1000)
        self.pace.setSuffix(" chars/s")
        self.pace.setSpecialValueText("as fast as it runs")
        self.pace.setValue(READABLE_PACE)
        self.generate = named(QPushButton("Generate"), "generateButton", "Generate",
                              "Write text with the current model (also works while training) (Ctrl+G)")
        self.next_char = named(QPushButton("Next character"), "nextCharButton", "Next character",
                               "One step of what the model does: show the odds of every candidate "
                               "for the next character, then draw one and append it (Ctrl+Shift+G)")
        self.stop = named(QPushButton("Stop"), "stopGenerateButton", "Stop generating",
                          "Stop writing (Esc)")
        self.output = named(QPlainTextEdit(), "outputView", "Generated text",
                            "What the model wrote: your prompt, then its characters as they come")
        self.output.setReadOnly(True)
        self.output.setFont(QFont("monospace"))
        self.odds = OddsView()
        self.sweep = named(QPushButton("Sweep"), "sweepButton", "Temperature sweep",
                           "Generate from the same prompt and seed at several temperatures, side by side")
        self.notice = named(Message(lines=2), "promptNotice", "Prompt notice",
                            "Characters of the prompt the model never saw")
        self.notice.setStyleSheet("color: #a15c00;")
        self.notice.hide()
        compact([self.top_k, self.top_p, self.length, self.seed, self.pace], width=64)
        self.typewriter = Typewriter(self.output, self)
        self._layout()

        self.temperature.valueChanged.connect(self._show_temperature)
        self.pace.valueChanged.connect(self._set_pace)
        self.prompt.textChanged.connect(self._check_prompt)
        self.prompt.returnPressed.connect(self.start)
        self.generate.clicked.connect(self.start)
        self.next_char.clicked.connect(self.step)
        self.stop.clicked.connect(self.halt)
        self.sweep.clicked.connect(self.start_sweep)
        self.odds.branchRequested.connect(self.branch)
        self.odds.refused.connect(self._say)
        self.output.cursorPositionChanged.connect(self._clicked)
        self.typewriter.shown.connect(self.odds.show_token)
        self.typewriter.drained.connect(self._drained)
        control.tokenGenerated.connect(self._token)
        control.generationEnded.connect(self._generation_ended)
        control.sweepEnded.connect(self._sweep_ended)
        current.changed.connect(self._model_changed)
        self._stepping = False
        self._drawn: Optional[tuple] = None   # step mode: the token waiting to be revealed
        self._began_with = ""                 # the prompt the output began from
        self.reveal = QTimer(self, singleShot=True, interval=REVEAL_MS)
        self.reveal.timeout.connect(self._reveal)
        self._show_temperature(self.temperature.value())
        self.set_running(False)

    def _layout(self) -> None:
        grid = QGridLayout()
        grid.addWidget(QLabel("Temperature"), 0, 0)
        grid.addWidget(self.temperature, 0, 1, 1, 2)
        grid.addWidget(self.temperature_label, 0, 3)
        for row, pairs in enumerate([(("Top-k", self.top_k), ("Top-p", self.top_p)),
                                     (("Length", self.length), ("Seed", self.seed))], start=1):
            for column, (text, widget) in enumerate(pairs):
                grid.addWidget(QLabel(text), row, 2 * column)
                grid.addWidget(widget, row, 2 * column + 1)
        grid.addWidget(QLabel("Pace"), 3, 0)
        grid.addWidget(self.pace, 3, 1, 1, 3)
        buttons = QHBoxLayout()
        compact([self.generate, self.next_char, self.stop, self.sweep])
        for button in (self.generate, self.next_char, self.stop, self.sweep):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.prompt)
        layout.addWidget(self.notice)
        layout.addLayout(grid)
        layout.addLayout(buttons)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.odds)

    # -- settings -----------------------------------------------------------------------
    def temperature_value(self) -> float:
        return self.temperature.value() / 100.0

    def sample_config(self) -> SampleConfig:
        return SampleConfig(max_new_chars=self.length.value(), temperature=self.temperature_value(),
                            top_k=self.top_k.value(), top_p=round(self.top_p.value(), 4),
                            seed=self.seed.value())

    @Slot(int)
    def _show_temperature(self, value: int) -> None:
        self.temperature_label.setText("0 (greedy)" if value == 0 else f"{value / 100.0:.2f}")

    @Slot(int)
    def _set_pace(self, value: int) -> None:
        self.typewriter.pace = value

    @Slot()
    def _model_changed(self) -> None:
        tokenizer = self.current.tokenizer
        if tokenizer is not None:
            self.top_k.setMaximum(tokenizer.vocab_size)
            self.next_char.setText("Next character" if tokenizer.kind == "char" else "Next token")
        self._check_prompt(self.prompt.text())

    @Slot(str)
    def _check_prompt(self, text: str) -> None:
        tokenizer = self.current.tokenizer
        self._say(tokenizer.encode_lenient(text).message if tokenizer is not None else "")

    @Slot(str)
    def _say(self, message: str) -> None:
        self.notice.setText(message[:1].upper() + message[1:])
        self.notice.setVisible(bool(message))

    # -- actions ------------------------------------------------------------------------
    def _busy(self) -> bool:
        return self.control.generating or self._stepping or self.typewriter.timer.isActive()

    @Slot()
    def start(self) -> None:
        """Generate from the prompt's known characters with the settings shown."""
        prompt = None if self._busy() else self.control.usable_prompt(self.prompt.text())
        if prompt is None:
            return
        self._began_with = self.prompt.text()
        self.typewriter.begin(prompt)
        self.set_running(True)
        self.control.generate(prompt, self.sample_config())

    @Slot()
    def step(self) -> None:
        """Step mode: the odds of every candidate for the next character, then one draw."""
        if self._busy():
            return
        # go on from the output, unless there is none yet or the prompt changed since it began
        fresh = not self.text() or self.prompt.text() != self._began_with
        text = self.control.usable_prompt(self.prompt.text() if fresh else self.text())
        if text is None:
            return
        if fresh:
            self._began_with = self.prompt.text()
            self.typewriter.begin(text)
            self.typewriter.timer.stop()  # step mode writes each character itself
        self._stepping = True
        self.set_running(True)
        # a seed of its own per position: the same text steps to the same character
        cfg = self.sample_config().replace(max_new_tokens=1, seed=self.seed.value() + len(text))
        self.control.generate(text, cfg, every_candidate=True)

    @Slot()
    def halt(self) -> None:
        self.control.stop()
        self.typewriter.stop()
        if self._stepping:  # no draw is revealed after a Stop
            self.reveal.stop()
            self._drawn, self._stepping = None, False
            self.set_running(False)

    @Slot()
    def start_sweep(self) -> None:
        prompt = None if self._busy() else self.control.usable_prompt(self.prompt.text())
        if prompt is None:
            return
        self.set_running(True)
        self.control.sweep(prompt, TEMPERATURES, self.sample_config())

    @Slot(int, str)
    def branch(self, position: int, text: str) -> None:
        """Put another token's text at this position of the output and continue from there."""
        self.prompt.setText(self.text()[:position] + text)
        self.start()

    @Slot(object)
    def _token(self, token: tuple) -> None:
        if not self._stepping:
            self.typewriter.push(token)
            return
        self._drawn = token
        self.odds.show_candidates(len(self.text()), token[2])
        self.reveal.start()

    @Slot()
    def _reveal(self) -> None:
        token, self._drawn = self._drawn, None
        self.typewriter.write([token])
        self._stepping = False
        self.set_running(False)
        self.stepped.emit()

    @Slot()
    def _generation_ended(self) -> None:
        if self._stepping:
            if self._drawn is None and not self.reveal.isActive():  # failed before its draw
                self._stepping = False
                self.set_running(False)
            return
        self.typewriter.source_ended()

    @Slot()
    def _drained(self) -> None:
        self.set_running(False)
        self.finished.emit()

    @Slot()
    def _sweep_ended(self) -> None:
        self.set_running(False)

    def attention_text(self) -> str:
        """What the attention view looks at: the selected output, else the prompt, else all."""
        return self.output.textCursor().selectedText() or self.prompt.text() or self.text()

    def set_running(self, running: bool) -> None:
        for button in (self.generate, self.next_char, self.sweep):
            button.setEnabled(not running)
        self.stop.setEnabled(running)

    # -- output -------------------------------------------------------------------------
    @property
    def tokens(self) -> list[tuple]:
        return self.typewriter.tokens

    @property
    def flushes(self) -> int:
        return self.typewriter.flushes

    def text(self) -> str:
        return self.output.toPlainText()

    def select_position(self, position: int) -> bool:
        """Show the odds the model gave at this position of the output (a generated one)."""
        index = self.typewriter.index_at(position)
        if index >= 0:
            self.odds.show_token(self.typewriter.starts[index], self.tokens[index])
            return True
        return False

    @Slot()
    def _clicked(self) -> None:
        cursor = self.output.textCursor()
        if not cursor.hasSelection():  # the character left of the click
            self.select_position(cursor.position() - 1)
