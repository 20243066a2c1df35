"""Tune by preference…: the form of a DPO run on the preference set, built from the settings'
declarations (PreferenceConfig's beta, held-out share, chosen-NLL and original-text weights;
AdaptConfig's method, rank and alpha; the run's steps, learning rate, batch and evaluations), with
the engine's own defaults for a preference run."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from playground.engine.config import AdaptConfig, PreferenceConfig, TrainConfig, settings_of
from playground.engine.training.pairs import DEFAULTS, preference_settings
from playground.ui.controllers.preference_control import TuneRequest
from playground.ui.views.settings_panel import setting_widget, show_value, widget_value
from playground.ui.views.widgets import Message, compact, named

ADAPT_KEYS = ("method", "rank", "alpha")
# the run's settings the form shows, in a preference run's own words (the rest are the model's)
TRAIN_KEYS = {"steps": "Steps: how many updates the tuning makes",
              "lr": "Learning rate of the tuning: too high and the model forgets how to write",
              "batch": "Pairs per step: at most the pairs left for training (the held-out ones are not)",
              "eval_interval": "How often (in steps) the curves get a point: held-out pairs, margin, original text"}


class TuneDialog(QDialog):
    startRequested = Signal(object)   # a TuneRequest

    def __init__(self, current, pairs, parent=None):
        """current: the model in hand (its training settings are the run's base); pairs: the
        PreferenceSet to tune on."""
        super().__init__(parent)
        self.setWindowTitle("Tune by preference")
        self.setObjectName("tuneDialog")
        self.current, self.pairs = current, pairs
        self.about = named(Message(lines=3), "tuneAbout", "What is tuned",
                           "The model that is tuned, and the pairs it is tuned on")
        self.fields: dict[str, tuple] = {}   # key -> (field, control)
        grid = QGridLayout()
        declared = (settings_of(PreferenceConfig) + [f for f in settings_of(AdaptConfig) if f.metadata["key"] in ADAPT_KEYS]
                    + [f for f in settings_of(TrainConfig) if f.metadata["key"] in TRAIN_KEYS])
        for cell, f in enumerate(declared):
            widget = setting_widget(f)
            key = f.metadata["key"]
            if key in TRAIN_KEYS:
                widget.setToolTip(TRAIN_KEYS[key])
            if key == "alpha":
                widget.setDecimals(2)  # 16.00, not 16.0000
            self.fields[key] = (f, widget)
            row, column = divmod(cell, 2)
            grid.addWidget(QLabel(f.metadata["title"]), row, column * 2)
            grid.addWidget(widget, row, column * 2 + 1)
        self.problem = named(Message(lines=3), "tuneProblem", "Tuning problem",
                             "What must be fixed before the tuning can start")
        self.problem.setStyleSheet("color: #b00020;")
        self.start = named(QPushButton("Tune"), "tuneStartButton", "Start tuning",
                           "Tune a copy of the model in hand on the pairs; when it ends it becomes the model in hand")
        self.start.setDefault(True)
        close = named(QPushButton("Close"), "tuneCloseButton", "Close", "Close this form (nothing starts)")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.start)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.about)
        layout.addLayout(grid)
        layout.addWidget(self.problem)
        layout.addStretch(1)
        layout.addLayout(buttons)
        compact([w for _, w in self.fields.values() if not isinstance(w, QComboBox)], width=72)
        compact([w for _, w in self.fields.values() if isinstance(w, QComboBox)], chars=12)
        self._fill()
        for _, widget in self.fields.values():
            (widget.currentIndexChanged if isinstance(widget, QComboBox) else widget.valueChanged).connect(self.refresh)
        self.start.clicked.connect(self.request_start)
        close.clicked.connect(self.close)
        current.changed.connect(self.refresh)
        pairs.changed.connect(self.refresh)
        self.refresh()

    def _fill(self) -> None:
        """The declared defaults; a preference run's own for its training settings, full tuning."""
        pref, adapt, train = PreferenceConfig(), AdaptConfig(method="full"), TrainConfig().replace(**DEFAULTS)
        for f, widget in self.fields.values():
            source = pref if f.name in PreferenceConfig.__dataclass_fields__ else (
                adapt if f.name in AdaptConfig.__dataclass_fields__ else train)
            show_value(f, widget, getattr(source, f.name))

    def _values(self, config_class) -> dict:
        names = config_class.__dataclass_fields__
        return {f.name: widget_value(f, w) for f, w in self.fields.values() if f.name in names}

    def request(self) -> TuneRequest:
        """What the form says, with the model in hand's other training settings."""
        value = self.current.value   # its train_config is all preference_settings reads
        train = (preference_settings(value, **self._values(TrainConfig)) if value is not None
                 else TrainConfig().replace(**DEFAULTS).edited(**self._values(TrainConfig)))
        return TuneRequest(train, PreferenceConfig(**self._values(PreferenceConfig)),
                           AdaptConfig(**self._values(AdaptConfig)))

    def problems(self) -> list[str]:
        """Why the tuning cannot start now ([] when it can)."""
        if self.current.value is None:
            return ["There is no model to tune: train one or open a model file first"]
        if not self.pairs.pairs:
            return ["The preference set is empty: rate some pairs (Show two) or open a pairs file first"]
        pref, adapt = PreferenceConfig(**self._values(PreferenceConfig)), AdaptConfig(**self._values(AdaptConfig))
        train = TrainConfig().replace(**DEFAULTS).edited(**self._values(TrainConfig))
        return pref.problems() + adapt.problems() + train.problems()

    @Slot()
    def refresh(self) -> None:
        lora = self.fields["method"][1].currentData() == "lora"
        for key in ("rank", "alpha"):
            self.fields[key][1].setEnabled(lora)
        n = len(self.pairs.pairs)
        self.about.setText(f"Tunes {self.current.describe()} on {n} pair{'s' * (n != 1)} of the preference set "
                           "with DPO: the chosen continuation made likelier than the rejected one, relative to "
                           "where the model starts.")
        problems = self.problems()
        self.problem.setText("\n".join(problems))
        self.problem.setVisible(bool(problems))
        self.start.setEnabled(not problems)

    def show_error(self, message: str) -> None:
        """A message from the engine (a set smaller than a batch, a line it cannot read) shown on the form."""
        self.problem.setText(message)
        self.problem.setVisible(True)
        self.show()
        self.raise_()

    @Slot()
    def request_start(self) -> bool:
        self.refresh()
        if not self.start.isEnabled():
            return False
        self.startRequested.emit(self.request())
        return True
