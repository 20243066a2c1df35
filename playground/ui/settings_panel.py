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

from playground.engine import config as limits
from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.corpus import distinct_windows
from playground.engine.estimate import estimate
from playground.engine.params import count_params
from playground.engine.presets import PRESETS
from playground.ui.token_count import TokenCounter
from playground.ui.widgets import Message, compact, named
from playground.ui.worker import WorkerPool

BAD = "background: #ffe0e0;"

# (attribute, objectName, label, minimum, maximum, tooltip)
INT_FIELDS = [
    ("layers", "layersSpin", "Layers", 1, limits.MAX_LAYERS,
     "Layers: how many transformer blocks are stacked. More can learn more, trains slower"),
    ("heads", "headsSpin", "Heads", 1, limits.MAX_HEADS,
     "Heads: attention heads per block, each looking for its own pattern. Width must divide evenly"),
    ("width", "widthSpin", "Width", 1, limits.MAX_WIDTH,
     "Width: size of each character's vector; more learns more, trains slower"),
    ("block", "blockSpin", "Block size", 1, limits.MAX_BLOCK,
     "Block size: how many previous characters the model can look at"),
    ("batch", "batchSpin", "Batch size", 1, limits.MAX_BATCH,
     "Batch size: windows of text per step. Larger is smoother but slower per step"),
    ("steps", "stepsSpin", "Steps", 1, limits.MAX_STEPS,
     "Steps: how many updates one click on Train makes"),
    ("warmup", "warmupSpin", "Warm-up", 0, limits.MAX_STEPS,
     "Warm-up: steps over which the learning rate rises from 0 to its peak"),
    ("eval_interval", "evalIntervalSpin", "Eval every", 1, limits.MAX_STEPS,
     "How often (in steps) to measure validation loss and show a sample"),
    ("seed", "seedSpin", "Seed", 0, 2**31 - 1,
     "Seed: the same seed and settings give exactly the same run"),
    ("threads", "threadsSpin", "Threads", 0, limits.MAX_THREADS,
     "CPU threads for training; 0 picks automatically (small models run best on one)"),
    ("patience", "patienceSpin", "Early stop", 0, 100_000,
     "Early stopping: stop after this many evaluations without a better validation loss "
     "(never: train every step)"),
]


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
        self.spins: dict[str, QSpinBox] = {}
        grid = QGridLayout()
        for i, (attr, obj, label, low, high, tip) in enumerate(INT_FIELDS):
            spin = named(QSpinBox(), obj, label, tip)
            spin.setRange(low, high)
            spin.setKeyboardTracking(False)
            if attr == "threads":
                spin.setSpecialValueText("auto")
            if attr == "patience":
                spin.setSpecialValueText("never")
            self.spins[attr] = spin
            grid.addWidget(QLabel(label), i // 2, (i % 2) * 2)
            grid.addWidget(spin, i // 2, (i % 2) * 2 + 1)
        keep_row = (len(INT_FIELDS) - 1) // 2   # beside the last field (early stop)
        row = keep_row + 1
        self.dropout = named(QDoubleSpinBox(), "dropoutSpin", "Dropout",
                             "Dropout: fraction of signals randomly silenced while training, "
                             "to fight memorising; 0 for small texts")
        self.dropout.setRange(0.0, 0.9)
        self.dropout.setSingleStep(0.05)
        self.lr = named(QDoubleSpinBox(), "lrSpin", "Learning rate",
                        "Learning rate: how big each update is. Too high diverges, too low crawls")
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, limits.MAX_LR)
        self.lr.setSingleStep(1e-4)
        grid.addWidget(QLabel("Dropout"), row, 0)
        grid.addWidget(self.dropout, row, 1)
        grid.addWidget(QLabel("Learning rate"), row, 2)
        grid.addWidget(self.lr, row, 3)
        self.keep = named(QComboBox(), "keepPicker", "Keep weights",
                          "Which weights the model ends with: those of the lowest validation loss "
                          "(best; a model that starts to memorise is not kept) or the last step's")
        self.keep.addItem("best (validation)", "best")
        self.keep.addItem("last step", "last")
        grid.addWidget(QLabel("Keep"), keep_row, 2)
        grid.addWidget(self.keep, keep_row, 3)
        self.tokenizer = named(QComboBox(), "tokenizerPicker", "Tokenizer",
                               "Characters: one token per character (the book's way). Byte-level "
                               "BPE: pieces of words learned from the corpus, as real LLMs use; "
                               "each step then sees more text")
        self.tokenizer.addItem("characters", "char")
        self.tokenizer.addItem("byte-level BPE", "bpe")
        self.bpe_vocab = named(QSpinBox(), "bpeVocabSpin", "BPE vocabulary",
                               "How many tokens the BPE learns (256 are the bytes themselves); "
                               "about 1 MB of text wants 512 to 1024")
        self.bpe_vocab.setRange(limits.MIN_BPE_VOCAB, limits.MAX_BPE_VOCAB)
        self.bpe_vocab.setKeyboardTracking(False)
        grid.addWidget(QLabel("Tokenizer"), row + 1, 0)
        grid.addWidget(self.tokenizer, row + 1, 1)
        grid.addWidget(QLabel("Vocabulary"), row + 1, 2)
        grid.addWidget(self.bpe_vocab, row + 1, 3)
        self.no_head_bias = named(QCheckBox("no head bias"), "noHeadBiasCheck", "No head bias",
                                  "Train without a bias on the output layer: exports to transformers "
                                  "(GPT-2, Starcoder2 have none) are then exact for any vocabulary")
        grid.addWidget(self.no_head_bias, row + 2, 0, 1, 2)
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

        compact([*self.spins.values(), self.dropout, self.lr, self.bpe_vocab], width=72)
        compact([self.preset, self.keep, self.tokenizer], chars=4)
        self.apply_preset("seed")
        for spin in [*self.spins.values(), self.dropout, self.lr]:
            spin.valueChanged.connect(self._refresh)
        self.keep.currentIndexChanged.connect(self._refresh)
        self.tokenizer.currentIndexChanged.connect(self._refresh)
        self.no_head_bias.toggled.connect(self._refresh)
        self.bpe_vocab.valueChanged.connect(self._refresh)
        self.tokensCounted = self.counter.counted
        self.counter.counted.connect(self._refresh)  # the vocabulary, so the parameter count, is known now
        self.counter.failed.connect(self.token_label.setText)
        self.spins["steps"].valueChanged.connect(self._steps_edited)
        self.preset.currentIndexChanged.connect(self._preset_chosen)

    # -- values -------------------------------------------------------------------------
    def value(self, attr: str) -> int:
        return self.spins[attr].value()

    def tokenizer_kind(self) -> str:
        return self.tokenizer.currentData()

    def model_config(self) -> ModelConfig:
        """The shown settings; the vocabulary is the corpus's (a BPE's once counted, else the
        size asked for)."""
        vocab = self._vocab_size
        if self.tokenizer_kind() == "bpe":
            vocab = self.counter.counts.get(self._count_key(), (0, self.bpe_vocab.value()))[1]
        return self._base_model.replace(
            vocab_size=vocab, n_layer=self.value("layers"), n_head=self.value("heads"),
            n_embd=self.value("width"), block_size=self.value("block"), head_bias=not self.no_head_bias.isChecked(),
            dropout=round(self.dropout.value(), 4))

    def train_config(self) -> TrainConfig:
        """The shown settings, applied by the rule the command line uses (TrainConfig.edited)."""
        return self._base_train.edited(
            batch_size=self.value("batch"), max_steps=self.value("steps"),
            learning_rate=self.lr.value(), warmup_steps=self.value("warmup"),
            eval_interval=self.value("eval_interval"), seed=self.value("seed"),
            threads=self.value("threads"), keep=self.keep.currentData(),
            patience=self.value("patience"), tokenizer=self.tokenizer_kind(),
            bpe_vocab=self.bpe_vocab.value())

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
        values = {"layers": model.n_layer, "heads": model.n_head, "width": model.n_embd,
                  "block": model.block_size}
        if train is not None:
            self._base_train = train
            values.update(batch=train.batch_size, steps=train.max_steps, warmup=train.warmup_steps,
                          eval_interval=train.eval_interval, seed=min(train.seed, 2**31 - 1),
                          threads=train.threads, patience=train.patience)
            self.lr.setValue(train.learning_rate)
            self.keep.setCurrentIndex(max(self.keep.findData(train.keep), 0))
            self.tokenizer.setCurrentIndex(max(self.tokenizer.findData(train.tokenizer), 0))
            self.bpe_vocab.setValue(train.bpe_vocab)
        for attr, v in values.items():
            self.spins[attr].setValue(v)
        self.dropout.setValue(model.dropout)
        self.no_head_bias.setChecked(not model.head_bias)
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
