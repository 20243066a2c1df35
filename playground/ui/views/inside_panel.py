"""Inside the model: the logit lens, where it is surprised, the embedding map and induction
heads, one sub-tab each, with a "?" for the one shown. Only the view in sight reads the model (at
each evaluation, when a model arrives, when it comes into sight), so training pays little."""

from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QTabWidget, QToolButton, QVBoxLayout, QWidget

from playground.ui.controllers.inside_control import KINDS, InsideController, Reading
from playground.ui.views.embedding_view import EmbeddingView
from playground.ui.views.explain import help_key, help_text
from playground.ui.views.induction_plot import InductionPlot
from playground.ui.views.lens_view import LensView
from playground.ui.views.surprise_view import MAX_CHARS, SurpriseView
from playground.ui.views.widgets import named

TITLES = {"lens": "Logit lens", "surprise": "Where it is surprised", "embeddings": "Embedding map",
          "induction": "Induction heads"}
TABS = {"lens": "Lens", "surprise": "Surprise", "embeddings": "Embeddings", "induction": "Induction"}


class InsidePanel(QWidget):
    def __init__(self, control: InsideController, prompt: Callable[[], str] = lambda: "",
                 held_out: Callable[[], tuple[str, str]] = lambda: ("", ""), parent: Optional[QWidget] = None):
        """control: reads the model in hand; prompt: the Generate panel's selected output, else its
        prompt, else its output (the lens reads it when its own field is empty); held_out: (what it is called, the text) the surprise view reads."""
        super().__init__(parent)
        self.control, self.prompt, self.held_out = control, prompt, held_out
        self.lens, self.surprise = LensView(), SurpriseView()
        self.embeddings, self.induction = EmbeddingView(), InductionPlot()
        self.views = {"lens": self.lens, "surprise": self.surprise, "embeddings": self.embeddings,
                      "induction": self.induction}
        self.stale = {kind: True for kind in KINDS}   # the weights changed since the view last read them
        self.source = ""   # what the surprise view reads, in words
        self.tabs = named(QTabWidget(), "insideTabs", "Inside the model",
                          "Look inside the model: the logit lens, where it is surprised, its embeddings, "
                          "induction heads")
        for kind in KINDS:
            self.tabs.addTab(self.views[kind], TABS[kind])
        self.help_button = named(QToolButton(), "insideViewHelp", "What is this view?",
                                 "What does the view shown here say? (one paragraph)")
        self.help_button.setText("?")
        self.help_button.setCheckable(True)
        self.tabs.setCornerWidget(self.help_button)
        self.helps = {kind: help_text(TITLES[kind], help_key(TITLES[kind])) for kind in KINDS}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for area in self.helps.values():
            area.hide()
            layout.addWidget(area)
        layout.addWidget(self.tabs, 1)
        self.help_button.toggled.connect(self._show_help)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.lens.readRequested.connect(self._read_lens_now)
        control.ready.connect(self._on_reading)
        control.failed.connect(self._on_failed)

    def kind_shown(self) -> str:
        return KINDS[self.tabs.currentIndex()]

    # -- when to read --------------------------------------------------------------------
    @Slot()
    def model_changed(self) -> None:
        """A new model in hand (trained, opened): every view reads it afresh; none (reset): every
        view is emptied."""
        if self.control.current.value is None:
            for view in self.views.values():
                view.clear()
            return
        self.embeddings.forget()
        self.induction.forget()
        self.weights_changed()

    @Slot(object)
    def evaluated(self, _event=None) -> None:
        self.weights_changed()

    def weights_changed(self) -> None:
        for kind in KINDS:
            self.stale[kind] = True
        self.refresh()

    @Slot()
    def refresh(self) -> bool:
        """Read the model for the view in sight when its weights changed; nothing when the
        panel is out of sight (another dock tab in front, closed, minimised). True when it asked."""
        kind = self.kind_shown()
        if not self.in_sight() or not self.stale[kind] or self.control.current.value is None:
            return False
        self.stale[kind] = False
        return self._read(kind)

    def in_sight(self) -> bool:
        """Visible on the screen: a dock tab behind another stays 'visible' to Qt, moved out of
        the window, so what counts is the part of it that shows."""
        return self.isVisible() and not self.visibleRegion().isEmpty() and not self.window().isMinimized()

    @Slot(bool)
    def dock_shown(self, shown: bool) -> None:
        """The dock's tab came to the front (or the dock opened): catch up once it is laid out."""
        if shown:
            QTimer.singleShot(0, self.refresh)

    def _read(self, kind: str) -> bool:
        if kind == "lens":
            return self.control.lens(self.lens_prompt())
        if kind == "surprise":
            self.source, text = self.held_out()
            if len(text) > MAX_CHARS:
                self.source, text = f"{self.source} (the first {MAX_CHARS:,} characters)", text[:MAX_CHARS]
            return self.control.surprise(text)
        if kind == "embeddings":
            return self.control.embeddings(self.embeddings.map)
        return self.control.induction()

    def lens_prompt(self) -> str:
        """The lens's own prompt, else the Generate panel's, else the start of the held-out text."""
        own = self.lens.prompt.text() or self.prompt()
        if own:
            return own
        value = self.control.current.value
        block = value.config.block_size if value is not None else 64
        return self.held_out()[1][:block]

    @Slot()
    def _read_lens_now(self) -> None:
        self.control.lens(self.lens_prompt())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.refresh)   # brought into sight: catch up with the weights

    @Slot(int)
    def _tab_changed(self, _index: int) -> None:
        self._show_help(self.help_button.isChecked())
        self.refresh()

    @Slot(bool)
    def _show_help(self, on: bool) -> None:
        for kind, area in self.helps.items():
            area.setVisible(on and kind == self.kind_shown())

    # -- what comes back -------------------------------------------------------------------
    @Slot(object)
    def _on_reading(self, reading: Reading) -> None:
        if self.control.current.value is None:   # read before a reset: its model is gone
            return
        if reading.kind == "lens":
            self.lens.set_lens(reading.result, reading.step)
        elif reading.kind == "surprise":
            self.surprise.set_surprise(reading.result, reading.pieces, reading.step, self.source or "the text")
        elif reading.kind == "embeddings":
            self.embeddings.set_map(reading.result, reading.step)
        else:
            self.induction.add(reading.result, reading.step)

    @Slot(object)
    def _on_failed(self, failure: tuple) -> None:
        kind, message = failure
        self.views[kind].show_problem(message)
