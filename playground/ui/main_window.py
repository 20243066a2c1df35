"""The main window: composes the panels and wires them to the session. No training logic here."""

from __future__ import annotations

import logging
import math
import os
from typing import Optional

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QMainWindow, QMessageBox, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from playground.engine.config import check_fits_text
from playground.engine.errors import PlaygroundError
from playground.ui.attention_view import AttentionView
from playground.ui.corpus_panel import CorpusPanel
from playground.ui.explain import explained
from playground.ui.generate_panel import GeneratePanel
from playground.ui.health_panel import HealthPanel
from playground.ui.insights import Insights
from playground.ui.loss_plot import LossPlot
from playground.ui.samples_panel import SamplesPanel
from playground.ui.session import NO_MODEL, Session
from playground.ui.settings_panel import SettingsPanel
from playground.ui.status import StatusTracker
from playground.ui.sweep_view import SweepView
from playground.ui.training_panel import TrainingPanel

log = logging.getLogger(__name__)
SETTINGS_ENV = "PLAYGROUND_SETTINGS_FILE"  # tests point this at a temporary file


def app_settings() -> QSettings:
    path = os.environ.get(SETTINGS_ENV)
    return QSettings(path, QSettings.IniFormat) if path else QSettings("GPT Playground", "GPT Playground")


class MainWindow(QMainWindow):
    trainingFinished = Signal()
    generationFinished = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("GPT Playground")
        self.setObjectName("mainWindow")
        self.session = Session(self)
        self.corpus = CorpusPanel()
        self.settings = SettingsPanel()
        self.training = TrainingPanel()
        self.plot = LossPlot()
        self.samples = SamplesPanel()
        self.generation = GeneratePanel()
        self.attention = AttentionView()
        self.health = HealthPanel()
        self.sweep = SweepView()
        self.status = StatusTracker(self.training, self)
        self.last_error = ""
        self._build_layout()
        self._build_menu()
        self.insights = Insights(self)  # first: it archives the last run before a new one starts
        self._wire()
        self._restore()
        self._validate()

    # -- composition --------------------------------------------------------------------
    def _build_layout(self) -> None:
        left = QSplitter(Qt.Vertical)
        left.addWidget(explained("Corpus", self.corpus))
        left.addWidget(explained("Model and training", self.settings))
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.training)
        top_layout.addWidget(self.plot, 1)
        self.lower_tabs = QTabWidget()
        self.lower_tabs.setObjectName("lowerTabs")
        self.lower_tabs.addTab(explained("Samples", self.samples), "Samples")
        self.lower_tabs.addTab(explained("Health", self.health), "Training health")
        middle = QSplitter(Qt.Vertical)
        middle.addWidget(explained("Training", top))
        middle.addWidget(self.lower_tabs)
        middle.setSizes([540, 260])
        self.right_tabs = QTabWidget()
        self.right_tabs.setObjectName("rightTabs")
        self.sweep_box = explained("Temperature sweep", self.sweep)
        self.right_tabs.addTab(explained("Generate", self.generation), "Generate")
        self.right_tabs.addTab(explained("Attention", self.attention), "Attention")
        self.right_tabs.addTab(self.sweep_box, "Temperature sweep")
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(middle)
        self.splitter.addWidget(self.right_tabs)
        self.splitter.setSizes([380, 620, 420])
        self.setCentralWidget(self.splitter)
        self.resize(1440, 900)

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&File")
        for text, shortcut, slot, name in [
                ("&Open model…", QKeySequence.Open, self.ask_open_model, "openModelAction"),
                ("&Save model…", QKeySequence.Save, self.ask_save_model, "saveModelAction"),
                ("Open &corpus file…", None, self.corpus.choose_file, "openCorpusAction"),
                ("&Quit", QKeySequence.Quit, self.close, "quitAction")]:
            action = QAction(text, self)
            action.setObjectName(name)
            if shortcut is not None:
                action.setShortcut(shortcut)
            action.triggered.connect(slot)
            menu.addAction(action)
            self.addAction(action)

    def _wire(self) -> None:
        s, t, g = self.session, self.training, self.generation
        t.train.clicked.connect(self.start_training)
        t.pause.clicked.connect(self.toggle_pause)
        t.stop.clicked.connect(s.stop_training)
        t.reset.clicked.connect(self.reset_model)
        g.generateRequested.connect(self.start_generation)
        g.stopRequested.connect(s.stop_generation)
        self.corpus.changed.connect(self._validate)
        self.settings.changed.connect(self._validate)
        self.settings.preset.currentIndexChanged.connect(self._preset_picked)
        s.trainingStarted.connect(self._on_started)
        s.stepped.connect(self._on_step)
        s.evaluated.connect(self._on_eval)
        s.sampled.connect(self._on_sample)
        s.trainingEnded.connect(self._on_training_ended)
        s.tokenGenerated.connect(g.append)
        s.generationEnded.connect(self._on_generation_ended)
        s.failed.connect(self.show_error)
        s.modelChanged.connect(self._on_model_changed)

    # -- training -----------------------------------------------------------------------
    def train_problem(self) -> str:
        """Why Train is disabled, in words; '' when training can start."""
        problems = [self.corpus.problem_text()] + self.settings.problems()
        problems = [p for p in problems if p]
        if not problems:
            text = self.corpus.text()
            n_val = int(len(text) * self.settings.train_config().val_fraction)
            n_train = len(text) - (n_val if n_val >= self.settings.value("block") + 1 else 0)
            try:
                check_fits_text(self.settings.model_config(), self.settings.train_config(), n_train)
            except PlaygroundError as exc:
                problems.append(str(exc))
        return "; ".join(problems)

    @Slot()
    def _validate(self) -> None:
        text = self.corpus.text()
        self.settings.set_corpus(max(len(set(text)), 1), len(text))
        self.corpus.set_split(self.settings.value("block"), self.settings.train_config().val_fraction)
        problem = self.train_problem()
        self.training.allow_train(not problem, problem)

    @Slot()
    def _preset_picked(self) -> None:
        from playground.engine.presets import PRESETS
        self.corpus.select(PRESETS[self.settings.preset.currentData()].corpus)

    @Slot()
    def start_training(self) -> None:
        problem = self.train_problem()
        if problem or self.session.training:
            if problem:
                self.show_error(f"Cannot train yet: {problem}")
            return
        self.session.start_training(self.corpus.name(), self.corpus.text(),
                                    self.settings.model_config(), self.settings.train_config())
        self.training.set_running(True)
        self.status.begin()

    @Slot()
    def toggle_pause(self) -> None:
        if self.session.paused:
            self.session.resume()
        else:
            self.session.pause()
        self.training.set_running(True, paused=self.session.paused)
        self.status.set_paused(self.session.paused)

    @Slot()
    def reset_model(self) -> None:
        self.session.reset()
        self.samples.clear()
        self.status.message("Model reset: the next Train starts from fresh weights "
                            "(this run stays on the plot, faint)")

    @Slot(object)
    def _on_started(self, ev) -> None:
        if ev.first_step == 0:
            self.samples.clear()
        self.plot.set_vocab_size(ev.vocab_size)
        self.plot.begin_run(ev.first_step, ev.last_step)
        self.generation.set_vocabulary(self.session.tokenizer().chars)
        self.status.started(ev)

    @Slot(object)
    def _on_step(self, ev) -> None:
        self.plot.add_step(ev.step, ev.loss, ev.elapsed_s)
        self.status.step(ev)

    @Slot(object)
    def _on_eval(self, ev) -> None:
        self.plot.add_validation(ev.step, ev.val_loss, ev.elapsed_s)
        self.status.evaluated(ev)

    @Slot(object)
    def _on_sample(self, ev) -> None:
        self.samples.add(ev.step, ev.text)

    @Slot(object)
    def _on_training_ended(self, done) -> None:
        self.training.set_running(False)
        self.plot.end_run()
        self.status.finished(done)
        self._validate()
        self.trainingFinished.emit()

    @Slot()
    def _on_model_changed(self) -> None:
        tokenizer = self.session.tokenizer()
        self.generation.set_vocabulary(tokenizer.chars if tokenizer else None)

    # -- generation ---------------------------------------------------------------------
    def usable_prompt(self) -> Optional[str]:
        """The prompt's characters the model knows, or None (after saying why in a message)
        when nothing can be generated now."""
        if self.session.generating:
            return None
        if not self.session.has_model:
            self.show_error(NO_MODEL)
            return None
        tokenizer = self.session.tokenizer()
        prompt = self.generation.prompt.text()
        known = "".join(c for c in prompt if c in tokenizer.stoi)
        if prompt and not known:
            self.show_error("None of the prompt's characters is in the model's vocabulary: "
                            "type characters from the corpus, or leave the prompt empty")
            return None
        return known

    @Slot()
    def start_generation(self) -> None:
        known = self.usable_prompt()
        if known is None:
            return
        self.generation.begin(known)
        self.generation.set_running(True)
        self.session.generate(known, self.generation.sample_config())

    @Slot()
    def _on_generation_ended(self) -> None:
        self.generation.end()
        self.generation.set_running(False)
        self.generationFinished.emit()

    # -- files --------------------------------------------------------------------------
    @Slot()
    def ask_save_model(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model", "model.safetensors",
                                              "GPT Playground models (*.safetensors)")
        if path:
            self.save_model(path)

    def save_model(self, path: str) -> bool:
        try:
            saved = self.session.save(path)
        except PlaygroundError as exc:
            self.show_error(f"The model was not saved: {exc}")
            return False
        self.status.message(f"Saved {saved}")
        return True

    @Slot()
    def ask_open_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", "",
                                              "GPT Playground models (*.safetensors);;All files (*)")
        if path:
            self.open_model(path)

    def open_model(self, path: str) -> bool:
        try:
            ckpt = self.session.open(path)
        except PlaygroundError as exc:
            self.show_error(f"Could not open the model: {exc}")
            return False
        corpus = ckpt.state.get("corpus")
        if corpus:
            self.corpus.select(corpus)
        self.settings.set_values(ckpt.model_config, ckpt.train_config)
        self.insights.archive()
        self.plot.set_vocab_size(ckpt.model_config.vocab_size)
        self.status.message(f"Opened {os.path.basename(path)}: {ckpt.model.num_params():,} parameters, "
                            f"trained {ckpt.state.get('step', 0)} steps. Generate, or Train to continue")
        return True

    # -- errors, settings, closing ------------------------------------------------------
    @Slot(str)
    def show_error(self, message: str) -> None:
        self.last_error = message
        log.warning(message)
        self.status.message(message)
        box = QMessageBox(QMessageBox.Warning, "GPT Playground", message, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.setObjectName("errorDialog")
        box.open()  # window-modal but not blocking: the app keeps running behind it

    def _restore(self) -> None:
        from playground.ui.persist import restore_window
        restore_window(self, app_settings())

    def closeEvent(self, event) -> None:
        from playground.ui.persist import save_window
        save_window(self, app_settings())
        self.corpus.shutdown()
        if not self.session.shutdown(3000):
            log.error("a worker did not stop within 3 s")
        event.accept()
