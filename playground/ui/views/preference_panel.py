"""Preferences: rate the model's own continuations and tune it by what you prefer. Rate shows two
continuations of a prompt (two seeds, the Generate panel's settings) side by side; a key picks the
left, the right, a tie or a skip, and the next two appear. Pairs lists the preference set (edit a
cell, delete a row; open and save JSON Lines). Tune runs DPO on it with live curves."""

from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QKeySequence, QTextCharFormat
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from playground.engine.config import SampleConfig
from playground.ui.controllers.preference_control import PreferenceController, PreferenceSet
from playground.ui.views.preference_list import PairsList
from playground.ui.views.preference_plot import PreferencePlot
from playground.ui.views.widgets import Message, compact, named

KEYS = {"left": "Alt+1", "right": "Alt+2", "tie": "Alt+T", "skip": "Alt+S"}  # none types a character


class PreferencePanel(QWidget):
    tuneRequested = Signal()   # Tune by preference…: the window opens the form

    def __init__(self, control: PreferenceController, pairs: PreferenceSet,
                 sample_config: Callable[[], SampleConfig] = lambda: SampleConfig(temperature=0.8),
                 parent: Optional[QWidget] = None):
        """control: writes the continuations and tunes; pairs: the preference set shown;
        sample_config: the Generate panel's settings (temperature, length, seed...)."""
        super().__init__(parent)
        self.control, self.pairs, self.sample_config = control, pairs, sample_config
        self.shown: Optional[tuple[str, str, str]] = None   # (prompt, left, right) being rated
        self.round = 0   # rounds shown: each takes the next two seeds
        self.seeds = (0, 0)   # of the two being written or shown
        self.tabs = named(QTabWidget(), "preferenceTabs", "Preferences", "Rate pairs, list them, tune by them")
        self.tabs.addTab(self._rate_page(), "Rate")
        self.list = PairsList(pairs)
        self.tabs.addTab(self.list, "Pairs")
        self.tabs.addTab(self._tune_page(), "Tune")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self._connect()
        self._set_rating(False)

    # -- the pages -------------------------------------------------------------------------
    def _rate_page(self) -> QWidget:
        self.prompt = named(QLineEdit(), "preferencePromptEdit", "Prompt to rate",
                            "The start both continuations share (Enter shows two); empty starts from the "
                            "model's first character")
        self.prompt.setPlaceholderText("Prompt (may be empty)")
        self.show_two = named(QPushButton("Show two"), "showTwoButton", "Show two",
                              "Write two continuations of the prompt with two seeds and the Generate panel's "
                              "settings (Enter)")
        self.left, self.right = (named(QPlainTextEdit(), f"{side}Continuation", f"{side.title()} continuation",
                                       f"The {side} continuation: the prompt in grey, then what the model wrote")
                                 for side in ("left", "right"))
        for view in (self.left, self.right):
            view.setReadOnly(True)
            view.setFont(QFont("monospace"))
        words = {"left": ("◀ Left", "The left continuation is better: a pair with it chosen"),
                 "right": ("Right ▶", "The right continuation is better: a pair with it chosen"),
                 "tie": ("Tie", "Both are as good: counted, no pair (a tie teaches nothing)"),
                 "skip": ("Skip", "Neither can be judged: counted, no pair")}
        self.choices = {}
        for name, (text, tip) in words.items():
            button = named(QPushButton(f"{text}  {KEYS[name]}"), f"{name}ChoiceButton", text, f"{tip} ({KEYS[name]})")
            button.setShortcut(QKeySequence(KEYS[name]))
            self.choices[name] = button
        compact(list(self.choices.values()) + [self.show_two])
        self.rate_note = named(Message(lines=2, reserve=True), "rateNote", "Rating note",
                               "The seeds of the two shown, and the preference set's counts")
        top = QHBoxLayout()
        top.addWidget(self.prompt, 1)
        top.addWidget(self.show_two)
        grid = QGridLayout()
        grid.addWidget(self.left, 0, 0)
        grid.addWidget(self.right, 0, 1)
        grid.addWidget(self.choices["left"], 1, 0)
        grid.addWidget(self.choices["right"], 1, 1)
        grid.addWidget(self.choices["tie"], 2, 0)
        grid.addWidget(self.choices["skip"], 2, 1)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addLayout(top)
        layout.addLayout(grid, 1)
        layout.addWidget(self.rate_note)
        return page

    def _tune_page(self) -> QWidget:
        self.tune = named(QPushButton("Tune by preference…"), "tuneButton", "Tune by preference",
                          "Tune the model in hand on the preference set with DPO (a form asks how)")
        self.stop = named(QPushButton("Stop"), "stopTuneButton", "Stop tuning",
                          "Stop after the current step: what was tuned so far becomes the model in hand")
        compact([self.tune, self.stop])
        self.tune_status = named(Message(lines=3), "tuneStatus", "Tuning status",
                                 "The run's step and loss, then how it ended")
        self.plot = PreferencePlot(self.control)
        legend = named(Message("● training pairs (blue)   ▲ held-out pairs (orange)   ■ original text", lines=2),
                       "preferenceLegend", "Legend", "What each curve is measured on")
        legend.setStyleSheet("color: #555;")
        buttons = QHBoxLayout()
        buttons.addWidget(self.tune)
        buttons.addWidget(self.stop)
        buttons.addStretch(1)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addLayout(buttons)
        layout.addWidget(self.tune_status)
        layout.addWidget(self.plot, 1)
        layout.addWidget(legend)
        return page

    def _connect(self) -> None:
        self.prompt.returnPressed.connect(self.request_two)
        self.show_two.clicked.connect(self.request_two)
        for name, button in self.choices.items():
            button.clicked.connect(lambda _=False, n=name: self.choose(n))
        self.list.failed.connect(lambda: self.tabs.setCurrentWidget(self.list))
        self.tune.clicked.connect(self.tuneRequested)
        self.stop.clicked.connect(self.control.stop)
        self.pairs.changed.connect(self._refresh_counts)
        c = self.control
        c.shown.connect(self._show)
        c.writeFailed.connect(self._write_failed)
        c.failed.connect(self._tune_failed)
        c.started.connect(self._tune_started)
        c.stepped.connect(self._stepped)
        c.noted.connect(self._noted)
        c.ended.connect(self._tune_ended)
        self._last_step = None
        self._note = ""
        self.status_timer = QTimer(self, interval=100)   # the step line, at most ten times a second
        self.status_timer.timeout.connect(self._show_step)
        self.tune_status.setText("Rate some pairs, then tune the model in hand by them.")
        self.stop.setEnabled(False)

    # -- rating ----------------------------------------------------------------------------
    @Slot()
    def request_two(self) -> bool:
        """Two new continuations of the prompt, with the next two seeds."""
        cfg = self.sample_config()
        seeds = (cfg.seed + 2 * self.round, cfg.seed + 2 * self.round + 1)
        if not self.control.show_two(self.prompt.text(), cfg, seeds):
            return False
        self.round += 1
        self._set_rating(False)
        self.show_two.setEnabled(False)
        for view in (self.left, self.right):   # greyed until the new two replace them
            view.setEnabled(False)
        self.seeds = seeds
        self.rate_note.setText(f"Writing two continuations (seeds {seeds[0]} and {seeds[1]})…")
        return True

    @Slot(object)
    def _show(self, shown: tuple) -> None:
        self.shown = shown
        prompt, left, right = shown
        for view, text in ((self.left, left), (self.right, right)):
            view.clear()
            cursor = view.textCursor()
            grey = QTextCharFormat()
            grey.setForeground(QColor("#888"))
            cursor.insertText(prompt, grey)
            cursor.insertText(text, QTextCharFormat())
        for view in (self.left, self.right):
            view.setEnabled(True)
        self._set_rating(True, left == right)
        self.show_two.setEnabled(True)
        self._refresh_counts()

    @Slot(str)
    def _write_failed(self, message: str) -> None:
        self.rate_note.setText(message)
        self.show_two.setEnabled(True)
        for view in (self.left, self.right):
            view.setEnabled(True)

    def _set_rating(self, on: bool, same: bool = False) -> None:
        for name, button in self.choices.items():
            button.setEnabled(on and not (same and name in ("left", "right")))

    def choose(self, choice: str) -> bool:
        """left / right: a pair with that one chosen; tie / skip: counted, no pair. Then the next two."""
        if self.shown is None or not self.choices[choice].isEnabled():
            return False
        prompt, left, right = self.shown
        if choice == "left":
            self.pairs.add(prompt, left, right)
        elif choice == "right":
            self.pairs.add(prompt, right, left)
        else:
            getattr(self.pairs, choice)()
        self.shown = None
        self._set_rating(False)
        self.request_two()
        return True

    @Slot()
    def _refresh_counts(self) -> None:
        """Under the two shown: their seeds and the set's counts."""
        if self.shown is not None:
            same = self.shown[1] == self.shown[2]
            self.rate_note.setText(f"Seeds {self.seeds[0]} and {self.seeds[1]}. "
                                   + ("The two are the same: a tie or a skip. " if same else "")
                                   + self.pairs.counts().capitalize() + ".")

    # -- tuning ----------------------------------------------------------------------------
    @Slot(object)
    def _tune_started(self, ev) -> None:
        self.tabs.setCurrentIndex(2)
        self.tune.setEnabled(False)
        self.stop.setEnabled(True)
        self._first, self._last = ev.first_step, ev.last_step
        self.tune_status.setText(f"Tuning on {ev.n_train} pairs ({ev.n_val} held out)"
                                 + (f": {ev.message}" if ev.message else "") + "…")
        self.status_timer.start()

    @Slot(object)
    def _stepped(self, ev) -> None:
        self._last_step = ev

    @Slot(str)
    def _noted(self, note: str) -> None:
        self._note = note[:1].upper() + note[1:]

    @Slot()
    def _show_step(self) -> None:
        ev, self._last_step = self._last_step, None
        if ev is not None:
            self.tune_status.setText(f"Step {ev.step:,} of {self._last:,}: loss {ev.loss:.4f}"
                                     + (f". {self._note}" if self._note else ""))

    def begin_tuning(self) -> None:
        """The window started a run: its curves and Stop show."""
        self.tabs.setCurrentIndex(2)
        self.tune.setEnabled(False)
        self.stop.setEnabled(True)
        self._note, self._failed = "", False
        self.tune_status.setText("Preparing the pairs and the reference model…")

    @Slot(str)
    def _tune_failed(self, message: str) -> None:
        self.tune_status.setText(message)
        self._failed = True

    @Slot(object)
    def _tune_ended(self, done) -> None:
        self.status_timer.stop()
        self.tune.setEnabled(True)
        self.stop.setEnabled(False)
        if done is None:
            if not getattr(self, "_failed", False):
                self.tune_status.setText("Stopped before the first step: the model in hand is as it was.")
            return
        how = {"completed": "Tuned", "stopped": "Stopped", "diverged": "Diverged"}.get(done.status, done.status)
        self.tune_status.setText(f"{how} after {done.step:,} steps in {done.train_seconds:.1f} s: the tuned model is "
                                 "the model in hand (not saved yet)." + (f" {done.message}" if done.message else "")
                                 + (f" {self._note}" if self._note else ""))
