"""The main window, the composition root: it builds the model in hand, the training and generation
controllers and the panels (each given the models it shows), lays them out and wires what one
panel asks of another. No training or generation logic lives here."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QSignalBlocker, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QMessageBox, QTabWidget, QVBoxLayout, QWidget

from playground.engine.config import check_fits_text
from playground.engine.data.corpus import split_sizes
from playground.engine.errors import CheckpointError, PlaygroundError
from playground.ui.controllers.generation_control import GenerationController
from playground.ui.controllers.inside_control import InsideController
from playground.ui.controllers.model_in_hand import CurrentModel, OpenedModel
from playground.ui.controllers.preference_control import PreferenceController, PreferenceSet
from playground.ui.controllers.remembered import SETTINGS_ENV, app_settings, last_folder, remember_folder  # noqa: F401 (tests set SETTINGS_ENV here)
from playground.ui.controllers.scaling_control import ScalingController
from playground.ui.controllers.training_control import TrainingController
from playground.ui.controllers.workers import WorkerPool
from playground.ui.views.attention_view import AttentionView
from playground.ui.views.corpus_panel import CorpusPanel
from playground.ui.views.docks import DOCK_AREAS, Dock, add_view_menu, tidy_tab_bars
from playground.ui.views.explain import explained
from playground.ui.views.generate_panel import GeneratePanel
from playground.ui.views.health_panel import HealthPanel
from playground.ui.views.inside_panel import InsidePanel
from playground.ui.views.loss_plot import LossPlot
from playground.ui.views.preference_panel import PreferencePanel
from playground.ui.views.samples_panel import SamplesPanel
from playground.ui.views.scaling_panel import ScalingPanel
from playground.ui.views.serve_panel import ServePanel
from playground.ui.views.settings_panel import SettingsPanel
from playground.ui.views.status_line import StatusTracker
from playground.ui.views.sweep_view import SweepView
from playground.ui.views.task_plot import TaskPlot
from playground.ui.views.training_panel import TrainingPanel

log = logging.getLogger(__name__)
FRAME_GUESS = QSize(8, 40)  # a title bar and borders, until the window manager says what they are


class MainWindow(QMainWindow):
    trainingFinished = Signal()
    generationFinished = Signal()
    tuningFinished = Signal()
    # this machine's matmul speed was measured (app.py, after torch loads): estimates follow it
    machineMeasured = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("GPT Playground")
        self.setObjectName("mainWindow")
        self.current = CurrentModel(self)  # the models, then the views, each given what it shows
        self.workers = WorkerPool(self)
        self.train_ctl = TrainingController(self.current, self.workers, self)
        self.gen_ctl = GenerationController(self.current, self.workers, self)
        self.scale_ctl = ScalingController(self.workers, self)
        self.corpus = CorpusPanel()
        self.settings = SettingsPanel(self.workers)
        self.training = TrainingPanel()
        self.plot = LossPlot(self.train_ctl)
        self.task_plot = TaskPlot(self.train_ctl)
        self.samples = SamplesPanel(self.train_ctl)
        self.health = HealthPanel(self.train_ctl)
        self.generation = GeneratePanel(self.gen_ctl, self.current)
        self.attention = AttentionView(self.gen_ctl)
        self.sweep = SweepView(self.gen_ctl)
        self.serve = ServePanel(self.current)
        self.inside_ctl = InsideController(self.current, self.workers, self)
        self.inside = InsidePanel(self.inside_ctl, self.generation.attention_text, self.held_out_text)
        self.scaling = ScalingPanel(self.scale_ctl)
        self.pref_set = PreferenceSet(self)   # the pairs rated in Preferences, and tuned on
        self.pref_ctl = PreferenceController(self.current, self.workers, self)
        self.preferences = PreferencePanel(self.pref_ctl, self.pref_set, self.generation.sample_config)
        self.status = StatusTracker(self.train_ctl, self.training, self)
        self.last_error = ""
        self.dialogs: dict = {}   # File > Evaluate…, Export…: made on first use
        # asks "save, discard or cancel?" about an unsaved model; tests put their answer here
        self.ask = self._ask_unsaved
        self._save_then_close = False   # Save was chosen on closing during a run: after it stops
        self._closing = False
        self._build_layout()
        self._build_menu()
        self._wire()
        self._restore()
        self._validate()

    # -- composition --------------------------------------------------------------------
    def _build_layout(self) -> None:
        """The training view in the middle; every other panel in a dock (movable, tabbable,
        closable; the View menu brings them back), arranged to fit a 1280x720 screen."""
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.training)
        top_layout.addWidget(self.plot, 1)
        top_layout.addWidget(self.task_plot)
        self.setCentralWidget(explained("Training", top))
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks)
        self.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
        self.docks: dict[str, Dock] = {}
        for key, title, tab, widget, area in [
                ("corpus", "Corpus", "", self.corpus, "left"),
                ("settings", "Model and training", "", self.settings, "left"),
                ("generate", "Generate", "", self.generation, "right"),
                ("attention", "Attention", "", self.attention, "right"),
                ("scaling", "Scaling", "", self.scaling, "right"),
                ("preferences", "Preferences", "", self.preferences, "right"),
                ("samples", "Samples", "", self.samples, "bottom"),
                ("health", "Health", "", self.health, "bottom"),
                # below the plot: six tabs on the right would not fit its tab bar at 1280 px (and the
                # sweep shows beside the Generate panel whose button starts it)
                ("sweep", "Temperature sweep", "Sweep", self.sweep, "bottom"),
                ("serve", "Serve", "", self.serve, "bottom"),
                ("inside", "Inside the model", "Inside", self.inside, "bottom")]:
            # the two forms scroll on a short screen rather than make the window taller than it
            dock = self.docks[key] = Dock(title, widget, f"{key}Dock", self, tab,
                                          scroll=key in ("settings", "scaling"))
            self.addDockWidget(DOCK_AREAS[area], dock)
        # tabs above their panels: a tab bar at the bottom is the first thing a short screen cuts
        self.setTabPosition(Qt.AllDockWidgetAreas, QTabWidget.North)
        d = self.docks
        self.tabifyDockWidget(d["generate"], d["attention"])
        self.tabifyDockWidget(d["attention"], d["scaling"])
        self.tabifyDockWidget(d["scaling"], d["preferences"])
        self.tabifyDockWidget(d["samples"], d["health"])
        self.tabifyDockWidget(d["health"], d["sweep"])
        self.tabifyDockWidget(d["sweep"], d["serve"])
        self.tabifyDockWidget(d["serve"], d["inside"])
        d["generate"].raise_()
        d["samples"].raise_()
        tidy_tab_bars(self)
        screen = QGuiApplication.primaryScreen()
        space = screen.availableGeometry().size() if screen is not None else QSize(1440, 900)
        # the frame is not known before the window manager draws it: leave room for a usual
        # one now, and fit exactly once it is known (fit_to_screen)
        self.resize(min(1440, space.width() - FRAME_GUESS.width()), min(900, space.height() - FRAME_GUESS.height()))
        self.resizeDocks([d["samples"]], [200], Qt.Vertical)
        self.default_layout = self.saveState()
        self._proportions_pending = True  # until the first show, or a remembered layout

    FIT_DELAYS = (0, 300, 1000)  # ms after the first show at which the window is fitted to its screen

    def showEvent(self, event) -> None:
        """At the first show, the docks take their share of the window's real width (a big
        screen gives every panel room, not only the plot), unless a layout was remembered; and
        the window, frame included, is made to fit its screen once the frame is known."""
        super().showEvent(event)
        if self._proportions_pending:
            self._proportions_pending = False
            self.share_out()
        for delay in self.FIT_DELAYS:  # window managers decorate a window a little after it maps
            QTimer.singleShot(delay, self.fit_to_screen)

    def share_out(self) -> None:
        """Each column its share of the window, but never less than its forms need to show
        whole (a combo box cut to "best (vali" reads as a bug), and the settings form all of
        its height where the window has it, the corpus box what is left."""
        d, width = self.docks, self.width()
        left = max(int(width * 0.25), d["settings"].sizeHint().width(), d["corpus"].minimumSizeHint().width())
        right = max(int(width * 0.3), d["generate"].minimumSizeHint().width())
        self.resizeDocks([d["corpus"], d["generate"]], [left, right], Qt.Horizontal)
        form = self.settings.sizeHint().height() + d["settings"].titleBarWidget().sizeHint().height() + 12
        column = d["corpus"].height() + d["settings"].height()
        corpus = max(column - form, d["corpus"].minimumSizeHint().height(), int(column * 0.25))
        self.resizeDocks([d["corpus"], d["settings"]], [corpus, column - corpus], Qt.Vertical)

    @Slot()
    def fit_to_screen(self) -> bool:
        """Shrink and move the window so that all of it, its frame and title bar included, is on
        the screen it is on; True when it had to. A maximised window is the manager's to size."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None or self.isMaximized() or self.isFullScreen() or not self.isVisible():
            return False
        space, frame, inner = screen.availableGeometry(), self.frameGeometry(), self.geometry()
        if space.contains(frame):
            return False
        extra_w, extra_h = frame.width() - inner.width(), frame.height() - inner.height()
        width = min(inner.width(), space.width() - extra_w)
        height = min(inner.height(), space.height() - extra_h)
        self.resize(width, height)
        x = min(max(frame.x(), space.x()), space.x() + space.width() - width - extra_w)
        y = min(max(frame.y(), space.y()), space.y() + space.height() - height - extra_h)
        self.move(x, y)  # a window's position is its frame's
        return True

    def _build_menu(self) -> None:
        self.actions_by_name: dict[str, QAction] = {}
        self._menu("&File", [
            ("&Open model…", [QKeySequence.Open], self.ask_open_model, "openModelAction"),
            ("Open &transformers folder…", [], self.ask_open_folder, "openFolderAction"),
            ("&Save model…", [QKeySequence.Save], self.ask_save_model, "saveModelAction"),
            ("Open &corpus file…", [], self.corpus.choose_file, "openCorpusAction"),
            ("&Evaluate…", [], lambda: self.show_dialog("evaluate"), "evaluateAction"),
            ("E&xport…", [], lambda: self.show_dialog("export"), "exportAction"),
            ("&Quit", [QKeySequence.Quit], self.close, "quitAction")])
        run_menu = self._menu("&Run", [
            ("&Train new model", ["Ctrl+Return", "Ctrl+Enter", "F5"], self.start_training, "trainAction"),
            ("&Continue training", ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"], self.continue_training,
             "continueAction"),
            ("&Fine-tune…", [], lambda: self.show_dialog("finetune"), "finetuneAction"),
            ("T&une by preference…", [], self.show_tune_form, "tuneAction"),
            ("&Pause or resume", [], self.toggle_pause, "pauseAction"),
            ("&Stop", ["Esc"], self.stop_running, "stopAction"),
            ("&Reset model", [], self.reset_model, "resetAction"),
            None,
            ("&Generate", ["Ctrl+G"], self.generate_now, "generateAction"),
            ("&Next character", ["Ctrl+Shift+G"], self.next_character, "nextCharAction")])
        run_menu.addSeparator()
        self.tensorboard_action = QAction("Log runs for &TensorBoard", self, checkable=True)
        self.tensorboard_action.setObjectName("tensorboardAction")
        self.tensorboard_action.toggled.connect(self.log_to_tensorboard)
        run_menu.addAction(self.tensorboard_action)
        add_view_menu(self, self.docks.values(), self.reset_layout)

    def _menu(self, title: str, entries: list) -> QMenu:
        """A menu of actions, each also a window shortcut; shortcuts show in the menu itself."""
        menu = self.menuBar().addMenu(title)
        menu.aboutToShow.connect(self._sync_actions)
        # a closed menu leaves every shortcut live: each action checks for itself whether it can run
        menu.aboutToHide.connect(lambda: [a.setEnabled(True) for a in self.actions_by_name.values()])
        for entry in entries:
            if entry is None:
                menu.addSeparator()
                continue
            text, keys, slot, name = entry
            action = QAction(text, self)
            action.setObjectName(name)
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.triggered.connect(slot)
            menu.addAction(action)
            self.addAction(action)
            self.actions_by_name[name] = action
        return menu

    @Slot()
    def _sync_actions(self) -> None:
        """The Run menu's entries are enabled as their buttons are."""
        a, t, g = self.actions_by_name, self.training, self.generation
        for name, button in (("trainAction", t.train), ("continueAction", t.resume_training),
                             ("finetuneAction", t.finetune),
                             ("pauseAction", t.pause), ("resetAction", t.reset),
                             ("generateAction", g.generate), ("nextCharAction", g.next_char)):
            a[name].setEnabled(button.isEnabled())
        a["stopAction"].setEnabled(t.stop.isEnabled() or g.stop.isEnabled())

    @Slot()
    def reset_layout(self) -> None:
        """Every panel back where it starts, floating ones docked, closed ones open."""
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        self.restoreState(self.default_layout)
        tidy_tab_bars(self)
        self.fit_to_screen()

    def _wire(self) -> None:
        t, train, gen = self.training, self.train_ctl, self.gen_ctl
        self.machineMeasured.connect(self.refresh_estimates)
        t.train.clicked.connect(self.start_training)
        t.resume_training.clicked.connect(self.continue_training)
        t.finetune.clicked.connect(lambda: self.show_dialog("finetune"))
        t.pause.clicked.connect(self.toggle_pause)
        t.stop.clicked.connect(train.stop)
        t.reset.clicked.connect(self.reset_model)
        self.scaling.source = self._scaling_source
        self.scaling.openRequested.connect(self.open_model)
        self.plot.follow(self.scale_ctl)  # each run of a ladder draws as it trains
        self.corpus.changed.connect(self._validate)
        self.settings.changed.connect(self._validate)
        self.current.changed.connect(self._validate)
        self.settings.changed.connect(self.scaling.refresh_if_shown)  # a ladder's time follows them
        self.corpus.changed.connect(self.scaling.refresh_if_shown)  # and its text (loaded, or not)
        self.settings.changed.connect(self._preview_schedule)
        self.settings.preset.currentIndexChanged.connect(self._preset_picked)
        self.samples.stepSelected.connect(self.plot.mark_step)
        self.attention.refreshRequested.connect(self.show_attention)
        self.sweep.runRequested.connect(self.generation.start_sweep)
        gen.sweepStarted.connect(self._show_sweep)
        train.evaluated.connect(self._refresh_attention)
        train.evaluated.connect(self._refresh_inside)
        self.current.changed.connect(self.inside.model_changed)
        self.docks["inside"].visibilityChanged.connect(self.inside.dock_shown)
        train.ended.connect(self._on_training_ended)
        self.generation.finished.connect(self.generationFinished)
        gen.sweepEnded.connect(self.generationFinished)
        train.failed.connect(self.show_error)
        gen.failed.connect(self.show_error)
        # Preferences: its questions are the window's, and the tuned model replaces the one in hand
        self.preferences.list.ask = lambda text, detail: self.ask(text, detail)
        self.preferences.tuneRequested.connect(self.show_tune_form)
        self.pref_ctl.may_replace = lambda: self.keep_or_discard("The model tuned by preference")
        self.pref_ctl.failed.connect(self._tuning_failed)
        self.pref_ctl.ended.connect(self._on_tuned)

    @Slot()
    def refresh_estimates(self) -> None:
        """The time estimates again (the settings' and the scaling ladder's), at this machine's
        measured speed."""
        self.settings.refresh_estimate()
        self.scaling.refresh_if_shown()

    # -- training -----------------------------------------------------------------------
    def train_problem(self) -> str:
        """Why Train is disabled, in words; '' when training can start."""
        loading = self.corpus.loading()
        if loading:
            return f"{loading} is still loading (the text in the box is the one before it)"
        problems = [p for p in [self.corpus.problem_text()] + self.settings.problems() if p]
        if not problems:
            model, train = self.settings.model_config(), self.settings.train_config()
            n_train, _ = split_sizes(len(self.corpus.text()), train.val_fraction, model.block_size)
            try:
                check_fits_text(model, train, n_train)
            except PlaygroundError as exc:
                problems.append(str(exc))
        return "; ".join(problems)

    @Slot()
    def _validate(self) -> None:
        self.status.forget_error()  # an error about the settings or text before: they changed
        text = self.corpus.text()
        self.settings.set_corpus(text)
        self.corpus.set_split(self.settings.value("block"), self.settings.train_config().val_fraction)
        problem = self.train_problem()
        self.training.allow_train(not problem, problem)
        model, train = self.settings.model_config(), self.settings.train_config()
        self.training.allow_continue(self.train_ctl.continue_problem(model, train, text), train.max_steps)

    @Slot()
    def _preview_schedule(self) -> None:
        if not self.train_ctl.running:  # what Train would follow: a new model, from step 0
            self.health.preview(self.settings.train_config(), 0)

    @Slot()
    def _preset_picked(self) -> None:
        from playground.engine.presets import PRESETS
        self.corpus.select(PRESETS[self.settings.preset.currentData()].corpus)

    @Slot()
    def start_training(self) -> bool:
        """Train a new model from fresh weights with the settings shown (asking first when the
        model in hand is not saved: it would be replaced)."""
        if not self._can_start("train"):
            return False
        if not self.keep_or_discard("Training a new model"):
            return False
        self._start(continuing=False)
        return True

    @Slot()
    def continue_training(self) -> bool:
        """Go on training the model in hand for the steps set, with the training settings shown."""
        if not self._can_start("continue training"):
            return False
        why = self.train_ctl.continue_problem(self.settings.model_config(), self.settings.train_config(),
                                              self.corpus.text())
        if why:
            self.show_error(f"Cannot continue: {why}")
            return False
        self._start(continuing=True)
        return True

    @Slot(object)
    def start_finetune(self, request) -> bool:
        """Fine-tune (a FinetuneRequest from the form): the model in hand, or the base of the
        last fine-tune again, on the corpus shown; asks first when the model in hand is not
        saved (the adapted model replaces it), and the form closes once the run starts."""
        if self.train_ctl.running or self.scale_ctl.running:
            self.show_error("Cannot fine-tune yet: " + ("a model is training: stop it first" if self.train_ctl.running
                                                        else "a scaling ladder is training"))
            return False
        value = self.current.value
        base = self.train_ctl.base_of(value) if request.again else value
        if base is None:
            self.show_error("Cannot fine-tune: there is no model in hand (open one, or train one first)")
            return False
        if not self.keep_or_discard("Fine-tuning"):
            return False
        # the model in hand as a checkpoint (a trained one's is a copy; an opened one's weights
        # are copied on the worker): the base stays as it is while its copy trains
        self.train_ctl.start_adaptation(base if request.again else value.checkpoint(), self.corpus.name(),
                                        self.corpus.text(), request)
        self.training.set_running(True)
        self.status.begin()
        self.dialogs["finetune"].hide()
        return True

    def show_tune_form(self):
        """Run > Tune by preference…: the form of a DPO run on the preference set."""
        from playground.ui.views.preference_dialog import TuneDialog
        if "tune" not in self.dialogs:
            self.dialogs["tune"] = TuneDialog(self.current, self.pref_set, self)
            self.dialogs["tune"].startRequested.connect(self.start_preference)
        form = self.dialogs["tune"]
        self.docks["preferences"].raise_tab()   # where its curves will be
        self.preferences.tabs.setCurrentIndex(2)
        form.refresh()
        form.show()
        form.raise_()
        return form

    @Slot(object)
    def start_preference(self, request) -> bool:
        """Tune the model in hand on the preference set (a TuneRequest from the form), asking
        first when it is not saved: the tuned model replaces it when the run ends."""
        busy = ("a model is training: stop it first" if self.train_ctl.running else "a scaling ladder is training"
                if self.scale_ctl.running else "a tuning is running" if self.pref_ctl.tuning else "")
        if busy or self.current.value is None:
            self.show_error(f"Cannot tune by preference yet: {busy or 'there is no model in hand'}")
            return False
        if not self.keep_or_discard("Tuning by preference"):
            return False
        self.preferences.begin_tuning()
        self.docks["preferences"].raise_tab()
        self.status.message("Tuning by preference: the curves are under Preferences > Tune")
        name = self.pref_set.path.name if self.pref_set.path else "the preference set"
        self.pref_ctl.tune(list(self.pref_set.pairs), request, name)
        self.dialogs["tune"].hide()
        return True

    @Slot(str)
    def _tuning_failed(self, message: str) -> None:
        if "tune" not in self.dialogs:
            self.show_error(message)
            return
        self.last_error = message   # the form again, with the engine's message, to change what it asks
        self.status.message(message, error=True)
        self.dialogs["tune"].show_error(message)

    @Slot(object)
    def _on_tuned(self, done) -> None:
        if done is not None:
            self.status.message(f"Tuned by preference ({done.status}, {done.step:,} steps): the tuned model is "
                                "in hand, not saved yet")
        self.tuningFinished.emit()
        self._save_and_close_if_asked()

    def _can_start(self, doing: str) -> bool:
        problem = self.train_problem()
        if self.train_ctl.running:
            return False
        if problem or self.scale_ctl.running:
            self.show_error(f"Cannot {doing} yet: {problem or 'a scaling ladder is training'}")
            return False
        return True

    def _start(self, continuing: bool) -> None:
        self.train_ctl.start(self.corpus.name(), self.corpus.text(), self.settings.model_config(),
                             self.settings.train_config(), continuing=continuing)
        self.training.set_running(True)
        self.status.begin(continuing)

    @Slot()
    def generate_now(self) -> None:
        """Ctrl+G: generate, where the text can be seen (the Generate tab comes to the front)."""
        self.docks["generate"].raise_tab()
        self.generation.start()

    @Slot()
    def next_character(self) -> None:
        self.docks["generate"].raise_tab()
        self.generation.step()

    @Slot()
    def stop_running(self) -> None:
        """Esc: stop training and generating, whichever runs."""
        self.train_ctl.stop()
        self.generation.halt()
        self.pref_ctl.stop()

    def _scaling_source(self) -> tuple:
        """The corpus and settings a ladder trains with; ValueError says why it cannot start."""
        problem = self.train_problem() or ("a model is training: stop it first" if self.train_ctl.running else "")
        if problem:
            raise ValueError(f"Cannot run the ladder yet: {problem}")
        return self.corpus.name(), self.corpus.text(), self.settings.model_config(), self.settings.train_config()

    @Slot()
    def toggle_pause(self) -> None:
        if self.train_ctl.paused:
            self.train_ctl.resume()
        else:
            self.train_ctl.pause()
        self.training.set_running(True, paused=self.train_ctl.paused)
        self.status.set_paused(self.train_ctl.paused)

    @Slot()
    def reset_model(self) -> bool:
        if not self.keep_or_discard("Reset"):
            return False
        self.train_ctl.reset()
        self.gen_ctl.stop()
        self.samples.clear()
        self.plot.archive()
        self.status.message("Model reset: the next Train starts from fresh weights "
                            "(this run stays on the plot, faint)")
        return True

    @Slot(object)
    def _on_training_ended(self, done) -> None:
        self.training.set_running(False)
        self._validate()
        self.trainingFinished.emit()
        self._save_and_close_if_asked()

    def _save_and_close_if_asked(self) -> None:
        if self._save_then_close:  # Save was chosen on closing during the run: now it can be
            self._save_then_close = False
            if self.ask_save_model():
                self._closing = True
                QTimer.singleShot(0, self.close)

    # -- not losing what the user made -----------------------------------------------------
    def keep_or_discard(self, doing: str) -> bool:
        """Before something replaces the model in hand: True when it may (the model is saved, or
        the user saved it now or chose to discard it), False when the user cancelled."""
        if self.current.value is None or not self.current.unsaved:
            return True
        answer = self.ask(f"{self.current.describe()[:1].upper()}{self.current.describe()[1:]} is not saved.",
                          f"{doing} replaces it. Save it first?")
        if answer == "save":
            return self.ask_save_model()
        return answer == "discard"

    def _ask_unsaved(self, text: str, detail: str) -> str:
        """The question itself: 'save', 'discard' or 'cancel'."""
        box = QMessageBox(QMessageBox.Question, "Unsaved model", text,
                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, self)
        box.setObjectName("unsavedDialog")
        box.setInformativeText(detail)
        box.setDefaultButton(QMessageBox.Save)
        box.button(QMessageBox.Save).setText("&Save…")
        box.button(QMessageBox.Discard).setText("&Discard it")
        box.button(QMessageBox.Cancel).setText("&Cancel")
        answer = box.exec()
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    # -- generation views -----------------------------------------------------------------
    @Slot()
    def show_attention(self) -> None:
        self.gen_ctl.attention(self.generation.attention_text())

    @Slot(object)
    def _refresh_attention(self, _event) -> None:
        # refreshed from the latest weights during training, when someone is looking
        if self.attention.maps is not None and self.attention.isVisible():
            self.show_attention()

    @Slot(object)
    def _refresh_inside(self, event) -> None:
        self.inside.evaluated(event)   # the view in sight reads the new weights; hidden ones wait

    def held_out_text(self) -> tuple[str, str]:
        """(what it is, its text): the validation text the Inside dock's surprise view reads: the
        run's own while one trains, else the corpus shown's tail as the split rule cuts it."""
        trainer = getattr(self.current.value, "trainer", None)
        if trainer is not None and trainer.corpus.has_validation:
            return "the run's validation text", trainer.corpus.text[trainer.corpus.train_chars:]
        text = self.corpus.text()
        block = self.current.value.config.block_size if self.current.value is not None else 1
        n_train, n_val = split_sizes(len(text), self.settings.train_config().val_fraction, block)
        if n_val:
            return "the corpus's validation text", text[n_train:]
        return "the corpus's last characters", text[-2000:]

    @Slot(str)
    def _show_sweep(self, _prompt: str) -> None:
        self.docks["sweep"].raise_tab()

    # -- files --------------------------------------------------------------------------
    @Slot()
    def ask_save_model(self) -> bool:
        """Ask where, then save; True when the model was saved."""
        if self.current.value is None:  # say so before asking for a file name
            self.show_error("There is no model to save yet: train one first")
            return False
        value = self.current.value  # named after the model in hand, not the fields shown now
        name = f"{value.corpus}-{value.config.n_layer}x{value.config.n_embd}-step{value.step}"
        path, _ = QFileDialog.getSaveFileName(self, "Save model", str(Path(last_folder("models")) / name),
                                              "GPT Playground models (*.safetensors)")
        return bool(path) and self.save_model(path)

    def save_model(self, path: str) -> bool:
        from playground.engine.model import checkpoint
        try:
            if self.current.value is None:
                raise CheckpointError("there is no model to save yet: train one first")
            ckpt = self.current.value.checkpoint()
            # the curve goes with the model: opening it shows how it learned
            history = self.plot.model_history()
            ckpt.state = {**ckpt.state, **({"history": history} if history else {})}
            saved = checkpoint.save(path, ckpt)
        except PlaygroundError as exc:
            self.show_error(f"The model was not saved: {exc}")
            return False
        self.current.mark_saved()
        remember_folder("models", str(saved))
        optim = checkpoint.optimizer_path(saved)
        beside = (f", and {optim.name} beside it: the optimizer's state, so Continue goes on exactly "
                  "where it stopped (keep the two together)" if optim.exists() else "")
        self.status.message(f"Saved {saved}{beside}")
        return True

    @Slot()
    def ask_open_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", last_folder("models"),
                                              "GPT Playground models (*.safetensors);;All files (*)")
        if path:
            self.open_model(path)

    @Slot()
    def ask_open_folder(self) -> None:
        """A GPT-2 or Starcoder2 folder from transformers (what Export writes, or a download)."""
        path = QFileDialog.getExistingDirectory(self, "Open a transformers folder (GPT-2 or Starcoder2)",
                                                last_folder("models"))
        if path:
            self.open_model(path)

    def open_model(self, path: str) -> bool:
        """Load a model file; any run or generation stops first, and the file's settings show."""
        from playground.engine.model import checkpoint
        try:
            ckpt = checkpoint.load(path)
        except PlaygroundError as exc:
            self.show_error(f"Could not open the model: {exc}")
            return False
        if not self.keep_or_discard(f"Opening {os.path.basename(path)}"):
            return False
        self.train_ctl.discard()
        self.gen_ctl.stop()
        self.workers.stop_all(3000)
        self.current.set(OpenedModel(ckpt))
        remember_folder("models", path)
        corpus = ckpt.state.get("corpus")
        if corpus:
            self.corpus.select(corpus)
        self.settings.set_values(ckpt.model_config, ckpt.train_config)
        if not self.plot.restore_history(ckpt.state.get("history")):
            self.plot.archive()
        self.plot.set_vocab_size(ckpt.model_config.vocab_size)
        self.samples.clear()  # what the previous model wrote is not this one's
        self.health.reset()
        self.status.opened(int(ckpt.state.get("step", 0)))
        self.status.message(f"Opened {os.path.basename(path)}: {ckpt.model.num_params():,} parameters, "
                            f"trained {ckpt.state.get('step', 0):,} steps. Generate, Continue to train it "
                            "further, or Train a new model")
        return True

    def show_dialog(self, name: str):
        """File > Evaluate… (score the model in hand), Export… (to transformers or ONNX) or
        Run > Fine-tune… (adapt the model in hand to the corpus shown)."""
        from playground.ui.views.evaluate_dialog import EvaluateDialog
        from playground.ui.views.export_dialog import ExportDialog
        from playground.ui.views.finetune_dialog import FinetuneDialog
        if name == "finetune" and name not in self.dialogs:
            form = self.dialogs[name] = FinetuneDialog(self.current, self.corpus, self.train_ctl, self)
            form.startRequested.connect(self.start_finetune)
            form.openModelRequested.connect(self.ask_open_model)
            form.openFolderRequested.connect(self.ask_open_folder)
        if name not in self.dialogs:
            self.dialogs[name] = (EvaluateDialog(self.gen_ctl, self.corpus, self) if name == "evaluate"
                                  else ExportDialog(self.current, self.workers, self))
        if name == "finetune":
            self.dialogs[name].refresh()
        self.dialogs[name].show()
        self.dialogs[name].raise_()
        return self.dialogs[name]

    # -- errors, settings, closing ------------------------------------------------------
    @Slot(str)
    def show_error(self, message: str) -> None:
        self.last_error = message
        log.warning(message)
        self.status.message(message, error=True)
        box = QMessageBox(QMessageBox.Warning, "GPT Playground", message, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.setObjectName("errorDialog")
        box.open()  # window-modal but not blocking: the app keeps running behind it

    @Slot(bool)
    def log_to_tensorboard(self, on: bool, quiet: bool = False) -> None:
        """Run > Log runs for TensorBoard: each training or fine-tuning run also writes TensorBoard
        event files, in a folder of its own under the data folder's tensorboard/ (the command
        line's train --tensorboard, from the same events). Refused, in words, without the
        tensorboard package."""
        from playground.engine.data.download import data_dir
        from playground.engine.errors import ConfigError
        from playground.engine.training.tensorboard_log import check_available
        root = None
        if on:
            try:
                check_available()
                root = str(data_dir().parent / "tensorboard")
            except ConfigError as exc:
                if not quiet:
                    self.status.message(str(exc).replace("--tensorboard", "Logging for TensorBoard"), error=True)
        self.train_ctl.tensorboard = root
        with QSignalBlocker(self.tensorboard_action):
            self.tensorboard_action.setChecked(root is not None)
        if root and not quiet:
            self.status.message(f"Each run from now on also writes TensorBoard files under {root}: "
                                f"tensorboard --logdir {root}")

    def _restore(self) -> None:
        from playground.ui.controllers.remembered import restore_window
        restore_window(self, app_settings())

    def closeEvent(self, event) -> None:
        if not self._may_close():
            event.ignore()
            return
        from playground.ui.controllers.remembered import save_window
        save_window(self, app_settings())
        self.corpus.shutdown()
        self.serve.stop()
        self.train_ctl.stop()
        self.scale_ctl.stop()
        self.gen_ctl.stop()
        self.pref_ctl.stop()
        if not self.workers.stop_all(5000):
            log.error("a worker did not stop within 5 s")
        event.accept()

    def _may_close(self) -> bool:
        """Closing never throws an unsaved model away without asking (Ctrl+Q included). Save
        during a run stops the run first, saves, then closes."""
        if not self._closing and not self.preferences.list.may_discard("Closing"):
            return False
        if not self._closing and self.pref_ctl.tuning:
            answer = self.ask("Tuning by preference is running.",
                              "Closing stops it and loses the tuned model. Save it first? (It stops, then you "
                              "choose where to save.)")
            if answer == "save":
                self._save_then_close = True
                self.pref_ctl.stop()
            return answer == "discard"
        running = self.train_ctl.running
        if self._closing or self.current.value is None or not (self.current.unsaved or running):
            return True
        answer = self.ask(f"Save {self.current.describe()} before closing?",
                          "Training is running: it stops first, then you choose where to save."
                          if running else "Closing without saving loses it.")
        if answer == "discard":
            return True
        if answer == "save" and running:
            self._save_then_close = True
            self.train_ctl.stop()
            return False
        if answer == "save" and self.ask_save_model():
            return True
        return False
