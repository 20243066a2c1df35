"""Run > Fine-tune…: adapt the model in hand to the corpus in the window, fully or with LoRA. The
form is built from the settings' declarations (AdaptConfig, and the fine-tune's steps, learning
rate and evaluations), shows the share of parameters that train as it is filled in, names the
characters the model never saw (leaving them out only when asked), and lets the user name the
base's original text, which is measured at every evaluation (and replayed) to show what it forgets."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from playground.engine.config import LORA_TARGETS, AdaptConfig, TrainConfig, check_fits_text, settings_of
from playground.engine.errors import PlaygroundError
from playground.engine.training.adapt import DEFAULTS, finetune_settings
from playground.ui.controllers.adaptation import (
    FinetuneRequest,
    base_settings,
    kept_original,
    share_text,
    trainable_share,
    unknown_characters,
)
from playground.ui.views.settings_panel import setting_widget, show_value, widget_value
from playground.ui.views.widgets import Message, compact, named

RED, QUIET = "color: #b00020;", "color: #555;"
TARGET_TIPS = {"attn.c_attn": "attention's queries, keys and values", "attn.c_proj": "attention's output",
               "mlp.c_fc": "the MLP's first layer", "mlp.c_proj": "the MLP's second layer"}
# the training settings a fine-tune shows, with its own words (the rest are the base's, and DEFAULTS)
TRAIN_KEYS = {"steps": "Steps: how many updates the fine-tune makes",
              "lr": "Learning rate of the fine-tune: gentler than training from scratch; too high forgets more",
              "eval_interval": "How often (in steps) the new text and the original text are measured"}


class FinetuneDialog(QDialog):
    startRequested = Signal(object)   # a FinetuneRequest
    openModelRequested = Signal()
    openFolderRequested = Signal()

    def __init__(self, current, corpus_panel, control, parent=None):
        """current: the model in hand; corpus_panel: the new text; control: the TrainingController
        (is a run going, and the base of the last fine-tune)."""
        super().__init__(parent)
        self.setWindowTitle("Fine-tune the model in hand")
        self.setObjectName("finetuneDialog")
        self.current, self.corpus, self.control = current, corpus_panel, control
        self._totals: dict = {}   # model settings -> their parameter count
        self._unknown: tuple = (None, None, (), 0)  # (text, tokenizer, unknown characters, length without them)
        self.about = named(Message(lines=3), "finetuneAbout", "What is fine-tuned",
                           "The model that is adapted, and the text it is adapted to")
        self.open_model = named(QPushButton("Open model…"), "finetuneOpenModelButton", "Open model",
                                "Open a model file to fine-tune (File > Open model…)")
        self.open_folder = named(QPushButton("Open transformers folder…"), "finetuneOpenFolderButton",
                                 "Open transformers folder", "Open a GPT-2 or Starcoder2 folder to fine-tune")
        self.start_from = named(QComboBox(), "finetuneStartFromPicker", "Start from",
                                "Fine-tune the model in hand further, or start again from the model the last "
                                "fine-tune started from: two methods then compare on one chart")
        self.start_from.addItem("the fine-tuned model in hand", False)
        self.start_from.addItem("its base again (compare methods)", True)
        self.fields: dict[str, tuple] = {}   # key -> (field, control)
        grid = QGridLayout()
        for cell, f in enumerate([f for f in settings_of(AdaptConfig) if f.metadata["key"] != "targets"]
                                 + [f for f in settings_of(TrainConfig) if f.metadata["key"] in TRAIN_KEYS]):
            widget = setting_widget(f)
            if f.metadata["key"] == "alpha":
                widget.setDecimals(2)  # 16.00, not 16.0000
            if f.metadata["key"] in TRAIN_KEYS:
                widget.setToolTip(TRAIN_KEYS[f.metadata["key"]])
            self.fields[f.metadata["key"]] = (f, widget)
            row, column = divmod(cell, 2)
            grid.addWidget(QLabel(f.metadata["title"]), row, column * 2)
            grid.addWidget(widget, row, column * 2 + 1)
        self.targets = {name: named(QCheckBox(name), f"target{name.title().replace('.', '').replace('_', '')}Check",
                                    name, f"LoRA adapters beside {TARGET_TIPS[name]} ({name}) in every block")
                        for name in LORA_TARGETS}
        targets = QHBoxLayout()
        targets.addWidget(QLabel("Targets"))
        for box in self.targets.values():
            targets.addWidget(box)
        targets.addStretch(1)
        self.original = named(QComboBox(), "finetuneOriginalPicker", "Original text",
                              "The text the model learned first: its held-out part is measured at every "
                              "evaluation (what the fine-tune costs it), and Replay mixes some of it in")
        self.unknown = named(Message(lines=3), "finetuneUnknown", "Unknown characters",
                             "Characters of the new text the model never saw")
        self.unknown.setStyleSheet(RED)
        self.drop = named(QCheckBox("Leave them out of the text"), "dropUnknownCheck", "Leave them out",
                          "A model keeps its vocabulary: the new text is fine-tuned on without these characters")
        self.replay_off = named(QPushButton("Turn replay off"), "replayOffButton", "Turn replay off",
                                "Set Replay to 0: no share of the batches from the original text")
        self.share = named(Message(lines=1), "trainableShare", "Trainable share",
                           "How many of the model's numbers the fine-tune changes (LoRA: the adapters' own)")
        self.note = named(Message(lines=2), "finetuneNote", "Note", "What the fine-tune will not show")
        self.note.setStyleSheet(QUIET)
        self.problem = named(Message(lines=3), "finetuneProblem", "Fine-tune problem",
                             "What must be fixed before the fine-tune can start")
        self.problem.setStyleSheet(RED)
        self.start = named(QPushButton("Fine-tune"), "finetuneStartButton", "Start fine-tuning",
                           "Adapt a copy of the model to the corpus in the window; it becomes the model in hand")
        self.start.setDefault(True)
        close = named(QPushButton("Close"), "finetuneCloseButton", "Close", "Close this form (nothing starts)")
        self._lay_out(grid, targets, close)
        self._fill()
        self._connect(close)
        self.refresh()

    def _lay_out(self, grid, targets, close) -> None:
        opens = QHBoxLayout()
        opens.addWidget(self.open_model)
        opens.addWidget(self.open_folder)
        opens.addStretch(1)
        start_from = QHBoxLayout()
        self.start_from_label = QLabel("Start from")
        start_from.addWidget(self.start_from_label)
        start_from.addWidget(self.start_from, 1)
        original = QHBoxLayout()
        original.addWidget(QLabel("Original text"))
        original.addWidget(self.original, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.replay_off)
        buttons.addStretch(1)
        buttons.addWidget(self.start)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.about)
        layout.addLayout(opens)
        layout.addLayout(start_from)
        layout.addLayout(grid)
        layout.addLayout(targets)
        layout.addLayout(original)
        for label in (self.share, self.unknown):
            layout.addWidget(label)
        layout.addWidget(self.drop)
        for label in (self.note, self.problem):
            layout.addWidget(label)
        layout.addStretch(1)
        layout.addLayout(buttons)
        compact([w for _, w in self.fields.values() if not isinstance(w, QComboBox)], width=72)
        compact([self.original, self.start_from] + [w for _, w in self.fields.values() if isinstance(w, QComboBox)],
                chars=12)
        self.resize(560, 400)  # it grows to what a long message needs

    def _fill(self) -> None:
        """The settings' defaults (a fine-tune's own for steps, learning rate and evaluations)."""
        from playground.engine.data.corpus import BUILTINS
        from playground.engine.data.download import SOURCES
        adapt, train = AdaptConfig(), TrainConfig().replace(**DEFAULTS)
        for f, widget in self.fields.values():
            show_value(f, widget, getattr(adapt if f.name in AdaptConfig.__dataclass_fields__ else train, f.name))
        for name in adapt.target_list():
            self.targets[name].setChecked(True)
        # each entry's data says where the text comes from: "" (what the model keeps),
        # "builtin:NAME" or "file:PATH" ("file:" asks for one)
        self.original.addItem("what the model keeps", "")
        for name in BUILTINS:
            self.original.addItem(f"built-in: {name}", f"builtin:{name}")
        for name, source in SOURCES.items():
            self.original.addItem(f"{source.title} (once downloaded)", f"builtin:{name}")
        self.original.addItem("a text file…", "file:")

    def _connect(self, close) -> None:
        for _, widget in self.fields.values():
            (widget.currentIndexChanged if isinstance(widget, QComboBox) else widget.valueChanged).connect(self.refresh)
        for box in list(self.targets.values()) + [self.drop]:
            box.toggled.connect(self.refresh)
        self.start_from.currentIndexChanged.connect(self.refresh)
        self.original.activated.connect(self._original_picked)
        self.original.currentIndexChanged.connect(self.refresh)
        self.replay_off.clicked.connect(lambda: self.fields["replay"][1].setValue(0.0))
        self.open_model.clicked.connect(self.openModelRequested)
        self.open_folder.clicked.connect(self.openFolderRequested)
        self.start.clicked.connect(self.request_start)
        close.clicked.connect(self.close)
        self.current.changed.connect(self.refresh)
        self.corpus.changed.connect(self.refresh)
        self.control.started.connect(self.refresh)
        self.control.ended.connect(self.refresh)

    # -- what the form says ---------------------------------------------------------------
    def adapt_config(self) -> AdaptConfig:
        shown = {f.name: widget_value(f, w) for f, w in self.fields.values() if f.name in AdaptConfig.__dataclass_fields__}
        return AdaptConfig(targets=",".join(n for n, box in self.targets.items() if box.isChecked()), **shown)

    def train_edits(self) -> dict:
        return {f.name: widget_value(f, w) for f, w in self.fields.values() if f.name in TrainConfig.__dataclass_fields__}

    def base(self):
        """What is fine-tuned: the base of the last fine-tune (Start from), or the model in hand."""
        again = self.control.base_of(self.current.value)
        return again if again is not None and self.start_from.currentData() else self.current.value

    def choose_original_file(self, path: Optional[str] = None) -> bool:
        """Name a file as the original text (asked for when not given); False when none was."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "The model's original text", "",
                                                  "Text files (*.txt);;All files (*)")
        if not path:
            return False
        from pathlib import Path
        at = self.original.findData(f"file:{path}")
        if at < 0:
            at = self.original.count() - 1   # before "a text file…"
            self.original.insertItem(at, f"file: {Path(path).name}", f"file:{path}")
            self.original.setItemData(at, path, 3)  # ToolTipRole: the whole path
        self.original.setCurrentIndex(at)
        return True

    @Slot(int)
    def _original_picked(self, index: int) -> None:
        if self.original.itemData(index) == "file:" and not self.choose_original_file():
            self.original.setCurrentIndex(0)

    def original_source(self) -> Optional[tuple[str, str]]:
        """The original text picked: None (what the model keeps), ("builtin", name) or ("file", path)."""
        kind, _, value = (self.original.currentData() or "").partition(":")
        return (kind, value) if kind and value else None

    def problems(self) -> list[str]:
        """Why the fine-tune cannot start now, in words ([] when it can); shows them on the form."""
        value, text = self.current.value, self.corpus.text()
        if value is None:
            return ["There is no model to fine-tune yet: open one (File > Open model… or Open transformers "
                    "folder…), or train one first"]
        if self.control.running:
            return ["A run is going: stop it (Esc) before fine-tuning"]
        problems = [p for p in [self.corpus.loading() and f"{self.corpus.loading()} is still loading",
                                self.corpus.problem_text()] if p]
        adapt, base = self.adapt_config(), self.base()
        config = base_settings(base)
        problems += adapt.problems()
        train = finetune_settings(base, **self.train_edits())
        problems += train.problems()
        unknown, kept = self._unknown_in(base.tokenizer, text)
        if unknown and not self.drop.isChecked():
            problems.append("Some characters of the new text are new to the model (above): tick "
                            "\"Leave them out of the text\", or pick another text")
        if not problems:
            from playground.engine.data.corpus import split_sizes
            try:
                check_fits_text(config, train, split_sizes(kept, train.val_fraction, config.block_size)[0])
            except PlaygroundError as exc:
                problems.append(f"The new text does not fit the model: {exc}")
        if adapt.replay and self.original_source() is None and not kept_original(base):
            problems.append("Replay needs the model's original text, and this model does not keep it: pick it "
                            "under Original text (a built-in corpus or a file), or turn replay off")
        return problems

    @Slot()
    def refresh(self) -> None:
        value = self.current.value
        self.open_model.setVisible(value is None)
        self.open_folder.setVisible(value is None)
        again = self.control.base_of(value) is not None
        self.start_from.setVisible(again)
        self.start_from_label.setVisible(again)
        lora = self.fields["method"][1].currentData() == "lora"
        for key in ("rank", "alpha"):
            self.fields[key][1].setEnabled(lora)
        for box in self.targets.values():
            box.setEnabled(lora)
        problems = self.problems()
        self.problem.setText("; ".join(problems) if value is None else "\n".join(problems[:3]))
        self.problem.setVisible(bool(problems))
        self.start.setEnabled(not problems)
        self.replay_off.setVisible(any(p.startswith("Replay needs") for p in problems))
        self._describe(value)

    def _describe(self, value) -> None:
        """The base and the text, the trainable share, unknown characters, what is not measured."""
        if value is None:
            self.about.setText("Fine-tuning adapts a model you have to new text. Open a model file or a "
                               "transformers folder (GPT-2, Starcoder2), or train one, then come back.")
            for label in (self.share, self.unknown, self.note):
                label.setText("")
                label.hide()
            self.drop.hide()
            return
        base = self.base()
        config = base_settings(base)
        text, name = self.corpus.text(), self.corpus.name()
        which = "the base of the last fine-tune again" if base is not value else self.current.describe()
        self.about.setText(f"Adapts {which}, {config.n_layer} layer{'s' * (config.n_layer > 1)} of width "
                           f"{config.n_embd} (block {config.block_size}), to the corpus in the window: "
                           f"{name!r}, {len(text):,} characters.")
        adapt = self.adapt_config()
        if not adapt.problems():
            self.share.setText(share_text(*trainable_share(config, self._total(config), adapt)))
        unknown = self._unknown_in(base.tokenizer, text)[0]
        shown = ", ".join(repr(c) for c in unknown[:12]) + (f" and {len(unknown) - 12} more" if len(unknown) > 12 else "")
        self.unknown.setText(f"The new text has {len(unknown)} character{'s' * (len(unknown) > 1)} the model never "
                             f"saw: {shown}. A model keeps its vocabulary, so they can only be left out."
                             if unknown else "")
        self.unknown.setVisible(bool(unknown))
        self.drop.setVisible(bool(unknown))
        kept = kept_original(base)
        self.original.setItemText(0, f"kept with the model: {kept}" if kept else
                                  "not known: what it forgets is not measured")
        self.note.setText("" if kept or self.original_source() is not None else
                          "The model's original text is not known: what the fine-tune costs it is not measured. "
                          "Pick it under Original text to see it on the plot.")
        for label in (self.share, self.note):  # an empty line would only push the buttons down
            label.setVisible(bool(label.text()))

    def _unknown_in(self, tokenizer, text: str) -> tuple[tuple, int]:
        """The characters of the text the model never saw, and the text's length without them;
        counted once per text (a 50 MB corpus takes a moment), not at every edit of the form."""
        seen_text, seen_tokenizer, unknown, kept = self._unknown
        if text is not seen_text or tokenizer is not seen_tokenizer:
            unknown = unknown_characters(tokenizer, text)
            kept = len(text) - sum(text.count(c) for c in unknown)
            self._unknown = (text, tokenizer, unknown, kept)
        return unknown, kept

    def _total(self, config) -> int:
        """The base's parameter count (by formula, or on torch's meta device: nothing allocated)."""
        if config not in self._totals:
            from playground.engine.model.param_count import count_params
            self._totals[config] = count_params(config)
        return self._totals[config]

    @Slot()
    def request_start(self) -> bool:
        """Ask the window to start the fine-tune; False (the reasons on the form) when it cannot."""
        self.refresh()
        if not self.start.isEnabled():
            return False
        base = self.base()
        self.startRequested.emit(FinetuneRequest(
            self.adapt_config(), finetune_settings(base, **self.train_edits()), self.drop.isChecked(),
            self.original_source(), base is not self.current.value))
        return True
