"""Model and training settings: a preset picker, one control per setting, the tokenizer with the
corpus's token count (counted on a worker), a live parameter count with a rough memory and
time-per-step estimate, and problems flagged on the field."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from playground.engine.config import ModelConfig, TrainConfig, settings_of
from playground.engine.data.corpus import distinct_windows
from playground.engine.model.param_count import count_params
from playground.engine.presets import PRESETS
from playground.engine.training.estimate import estimate
from playground.ui.controllers.token_counter import TokenCounter
from playground.ui.controllers.workers import WorkerPool
from playground.ui.views.widgets import Message, compact, named

BAD = "background: #ffe0e0;"
SPIN_LIMIT = 2**31 - 1  # a QSpinBox holds 32-bit numbers; a seed may be larger on the command line


def camel(key: str) -> str:
    """eval_interval -> evalInterval (widget object names)."""
    first, *rest = key.split("_")
    return first + "".join(word.capitalize() for word in rest)


def setting_widget(f) -> QWidget:
    """The control for one declared setting (engine/config.py: _setting): a spin box for a
    number, a list for choices, a check box for a yes/no, with its range, words and tooltip."""
    meta = f.metadata
    key, title, tip = meta["key"], meta["title"], meta["tip"]
    if meta["invert"] or f.type in (bool, "bool"):
        return named(QCheckBox(title), f"{camel(key)}Check", title, tip)
    if meta["choices"]:
        combo = named(QComboBox(), f"{camel(key)}Picker", title, tip)
        for choice, words in zip(meta["choices"], meta["names"] or [str(c) for c in meta["choices"]]):
            combo.addItem(words, choice)
        return combo
    if f.type in (int, "int"):
        spin = named(QSpinBox(), f"{camel(key)}Spin", title, tip)
        spin.setRange(meta["low"], min(meta["high"], SPIN_LIMIT))
        spin.setKeyboardTracking(False)
    else:
        spin = named(QDoubleSpinBox(), f"{camel(key)}Spin", title, tip)
        decimals = meta["decimals"] or 4
        spin.setDecimals(decimals)
        spin.setRange(meta["low"] + (10 ** -decimals if meta["low_open"] else 0), meta["high"])
        spin.setSingleStep(meta["step"] or 10 ** -decimals)
    if meta["special"]:
        spin.setSpecialValueText(meta["special"])
    return spin


def widget_value(f, widget):
    meta = f.metadata
    if isinstance(widget, QCheckBox):
        return not widget.isChecked() if meta["invert"] else widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QDoubleSpinBox):
        return round(widget.value(), widget.decimals())
    return widget.value()


def show_value(f, widget, value) -> None:
    if isinstance(widget, QCheckBox):
        widget.setChecked(not value if f.metadata["invert"] else bool(value))
    elif isinstance(widget, QComboBox):
        widget.setCurrentIndex(max(widget.findData(value), 0))
    elif isinstance(widget, QSpinBox):
        widget.setValue(min(int(value), widget.maximum()))
    else:
        widget.setValue(float(value))


class SettingsPanel(QWidget):
    changed = Signal()

    def __init__(self, workers: Optional[WorkerPool] = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._vocab_size, self._text = 13, ""
        self.counter = TokenCounter(workers, self)
        self._windows: tuple = (None, 0, 0)  # (text, block size, distinct windows), memoised
        # the preset's (or opened model's) settings: the fields shown here edit them
        self._base_model, self._base_train = ModelConfig(), TrainConfig()
        self._quiet = False  # set while several fields change at once
        self.preset = named(QComboBox(), "presetPicker", "Preset",
                            "Presets fill in every setting, and pick a corpus, for a known-good run")
        for name, preset in PRESETS.items():
            if preset.device != "cpu":
                continue  # the window trains on the CPU
            self.preset.addItem(name, name)
            self.preset.setItemData(self.preset.count() - 1, preset.description, 3)  # ToolTipRole
        # one control per declared setting, in the order they are declared: a new setting in
        # engine/config.py appears here (and on the command line) without a line of this file
        self.fields: dict[str, tuple] = {}  # key -> (its field, its control, ModelConfig or TrainConfig)
        grid, cell = QGridLayout(), 0
        for config_class in (ModelConfig, TrainConfig):
            for f in settings_of(config_class):
                if not f.metadata["window"]:
                    continue
                widget = setting_widget(f)
                self.fields[f.metadata["key"]] = (f, widget, config_class)
                row, column = divmod(cell, 2)
                if isinstance(widget, QCheckBox):
                    grid.addWidget(widget, row, column * 2, 1, 2)
                else:
                    grid.addWidget(QLabel(f.metadata["title"]), row, column * 2)
                    grid.addWidget(widget, row, column * 2 + 1)
                cell += 1
        self.spins: dict[str, QSpinBox] = {k: w for k, (_, w, _) in self.fields.items() if isinstance(w, QSpinBox)}
        # the controls the rest of the window (and its tests) reach by name
        self.lr, self.dropout = self.fields["lr"][1], self.fields["dropout"][1]
        self.keep, self.tokenizer = self.fields["keep"][1], self.fields["tokenizer"][1]
        self.bpe_vocab, self.no_head_bias = self.fields["bpe_vocab"][1], self.fields["no_head_bias"][1]
        self.token_label = named(Message(lines=2), "tokenCountLabel", "Token count",
                                 "How many tokens the corpus becomes, and characters per token")
        self.param_label = named(Message(lines=1), "paramCountLabel", "Parameter count",
                                 "How many numbers the model learns")
        self.estimate = named(Message(lines=2), "estimateLabel", "Estimate",
                              "Rough memory and time per step on this CPU (the bench measures real figures)")
        self.problem = named(Message(lines=3), "settingsProblem", "Settings problem",
                             "What must be fixed before training can start")
        self.problem.setStyleSheet("color: #b00020;")

        form = QFormLayout()
        form.addRow("Preset", self.preset)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(grid)
        layout.addWidget(self.token_label)
        layout.addWidget(self.param_label)
        layout.addWidget(self.estimate)
        layout.addWidget(self.problem)
        layout.addStretch(1)

        compact([w for _, w, _ in self.fields.values() if isinstance(w, (QSpinBox, QDoubleSpinBox))], width=72)
        compact([self.preset] + [w for _, w, _ in self.fields.values() if isinstance(w, QComboBox)], chars=4)
        self.apply_preset("seed")
        for _, widget, _ in self.fields.values():
            changed = (widget.toggled if isinstance(widget, QCheckBox) else
                       widget.currentIndexChanged if isinstance(widget, QComboBox) else widget.valueChanged)
            changed.connect(self._refresh)
        self.tokensCounted = self.counter.counted
        self.counter.counted.connect(self._refresh)  # the vocabulary, so the parameter count, is known now
        self.counter.failed.connect(self.token_label.setText)
        self.spins["steps"].valueChanged.connect(self._steps_edited)
        self.preset.currentIndexChanged.connect(self._preset_chosen)

    # -- remembered between sessions -------------------------------------------------------
    def remembered(self) -> dict:
        """Each control's state by its setting's key, for the settings file."""
        out = {}
        for key, (_, widget, _) in self.fields.items():
            out[key] = (int(widget.isChecked()) if isinstance(widget, QCheckBox) else
                        widget.currentData() if isinstance(widget, QComboBox) else widget.value())
        return out

    def recall(self, saved: dict) -> None:
        """Put back what remembered() gave; a value missing or malformed keeps what is shown."""
        for key, (_, widget, _) in self.fields.items():
            value = saved.get(key)
            if value is None:
                continue
            try:
                if isinstance(widget, QCheckBox):
                    widget.setChecked(str(value) in ("1", "true", "True"))
                elif isinstance(widget, QComboBox):
                    if widget.findData(value) >= 0:
                        widget.setCurrentIndex(widget.findData(value))
                elif isinstance(widget, QSpinBox):
                    widget.setValue(int(value))
                else:
                    widget.setValue(float(value))
            except (TypeError, ValueError):
                pass

    # -- values -------------------------------------------------------------------------
    def value(self, attr: str) -> int:
        return self.spins[attr].value()

    def tokenizer_kind(self) -> str:
        return self.tokenizer.currentData()

    def _shown(self, config_class) -> dict:
        return {f.name: widget_value(f, w) for f, w, c in self.fields.values() if c is config_class}

    def model_config(self) -> ModelConfig:
        """The shown settings; the vocabulary is the corpus's (a BPE's once counted, else the
        size asked for)."""
        vocab = self._vocab_size
        if self.tokenizer_kind() == "bpe":
            vocab = self.counter.counts.get(self._count_key(), (0, self.bpe_vocab.value()))[1]
        return self._base_model.replace(vocab_size=vocab, **self._shown(ModelConfig))

    def train_config(self) -> TrainConfig:
        """The shown settings, applied by the rule the command line uses (TrainConfig.edited)."""
        return self._base_train.edited(**self._shown(TrainConfig))

    def set_corpus(self, text: str) -> None:
        """The corpus's size matters to the estimate: a tiny text repeats windows in a batch."""
        if text is not self._text:
            self._text, self._vocab_size = text, max(len(set(text)), 1)
            self._refresh()

    def distinct_windows(self, block_size: int) -> int:
        """The corpus's different training windows for this block size (a repeated phrase has
        one per position in the phrase), counted once per text and block size."""
        text, block, count = self._windows
        if text is not self._text or block != block_size:
            count = distinct_windows(self._text, block_size)
            self._windows = (self._text, block_size, count)
        return count

    def set_values(self, model: ModelConfig, train: Optional[TrainConfig]) -> None:
        """Show the given settings (a preset, or an opened model's) without firing per field."""
        self._quiet = True
        self._base_model = model
        if train is not None:
            self._base_train = train
        for f, widget, config_class in self.fields.values():
            source = model if config_class is ModelConfig else train
            if source is not None:
                show_value(f, widget, getattr(source, f.name))
        self._quiet = False
        self._refresh()

    @Slot(int)
    def _steps_edited(self, steps: int) -> None:
        """A run made shorter than its warm-up: the warm-up field follows, by the same rule as
        the command line's --steps (TrainConfig.edited)."""
        if self._quiet:
            return
        shown = TrainConfig(max_steps=max(steps, self.value("warmup")), warmup_steps=self.value("warmup"))
        self.spins["warmup"].setValue(shown.edited(max_steps=steps).warmup_steps)

    @Slot(int)
    def _preset_chosen(self, _index: int) -> None:
        self.apply_preset(self.preset.currentData())

    @Slot(str)
    def apply_preset(self, name: str) -> None:
        preset = PRESETS[name]
        if self.preset.currentData() != name:
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(self.preset.findData(name))
            self.preset.blockSignals(False)
        self.set_values(preset.model, preset.train)

    # -- checks and estimates -----------------------------------------------------------
    def problems(self) -> list[str]:
        return self.model_config().problems() + self.train_config().problems()

    def refresh_estimate(self) -> None:
        """The time and memory estimate again, alone (it follows the machine's measured speed;
        the settings themselves did not change, so nothing else is redone or announced)."""
        model = self.model_config()
        if not self._quiet and not model.problems():
            self.estimate.setText(self._estimate(model))

    @Slot()
    def _refresh(self) -> None:
        if self._quiet:
            return
        model, problems = self.model_config(), self.problems()
        self.spins["heads"].setStyleSheet(BAD if model.n_embd % model.n_head else "")
        self.spins["width"].setStyleSheet(BAD if model.n_embd % model.n_head else "")
        self.spins["warmup"].setStyleSheet(BAD if self.value("warmup") > self.value("steps") else "")
        self.problem.setText("; ".join(problems))
        self.problem.setVisible(bool(problems))
        self.bpe_vocab.setEnabled(self.tokenizer_kind() == "bpe")
        self._show_tokens()
        if not model.problems():
            n = count_params(model)
            self.param_label.setText(f"{n:,} parameters")
            self.estimate.setText(self._estimate(model))
        else:
            self.param_label.setText("parameters: fix the settings first")
            self.estimate.setText("")
        self.changed.emit()

    # -- the corpus in tokens -----------------------------------------------------------
    def _count_key(self) -> tuple:
        kind = self.tokenizer_kind()
        return hash(self._text), kind, self.bpe_vocab.value() if kind == "bpe" else 0

    def _show_tokens(self) -> None:
        """The corpus's token count and characters per token; a BPE's is counted on a worker
        (training it on 1 MB takes a second or two) and shown when it arrives."""
        n, key = len(self._text), self._count_key()
        if self.tokenizer_kind() == "char" or not n:
            self.token_label.setText(f"{n:,} tokens, 1 character each ({self._vocab_size} distinct)" if n else "")
        elif key in self.counter.counts:
            tokens, vocab = self.counter.counts[key]
            self.token_label.setText(f"{tokens:,} BPE tokens (a vocabulary of {vocab:,}), "
                                     f"{n / max(tokens, 1):.2f} characters per token")
        elif self.counter.count(key, self._text, self.bpe_vocab.value(), self._base_train.val_fraction):
            self.token_label.setText("counting the corpus's BPE tokens…")

    def _estimate(self, model: ModelConfig) -> str:
        est = estimate(model, self.train_config(), self.distinct_windows(model.block_size))
        return est.describe(self.value("steps"))
