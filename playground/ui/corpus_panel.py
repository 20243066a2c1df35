"""Corpus panel: built-in picker, an editable text box, Open file… and drag-and-drop, live stats.

Big files load on a worker thread with a progress bar; the box then shows a read-only preview
while the whole file is used for training.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from playground.engine.config import too_short
from playground.engine.corpus import BUILTINS, CorpusError, builtin_text, check_text, local_copy, split_sizes
from playground.engine.download import SOURCES
from playground.ui.widgets import named
from playground.ui.worker import GeneratorWorker, WorkerHandle

CUSTOM = "custom"
PREVIEW_CHARS = 200_000  # a QPlainTextEdit beyond this gets sluggish; the full text is kept aside


class CorpusPanel(QWidget):
    changed = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self._text = ""              # the whole corpus (may be larger than the box shows)
        self._name = ""
        self._from_file = False      # a large file is shown as a read-only preview
        self._block_size, self._val_fraction = 32, 0.1
        self._loader: Optional[WorkerHandle] = None
        self._shown = ""             # the picker entry whose text is in the box

        self.picker = named(QComboBox(), "corpusPicker", "Corpus",
                            "Pick a built-in text to learn, or Custom to paste or open your own")
        self.picker.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setMinimumContentsLength(14)  # long names are cut in the box, whole in the list
        for key, (_, description) in BUILTINS.items():
            self.picker.addItem(f"{key} - {description}", key)
        for key, source in SOURCES.items():  # public-domain texts: downloaded on first use
            self.picker.addItem(self._source_label(key), key)
            self.picker.setItemData(self.picker.count() - 1, f"{source.about}; {source.url}", 3)
        self.picker.addItem("custom - your own text (paste, type, open or drop a file)", CUSTOM)
        self.edit = named(QPlainTextEdit(), "corpusEdit", "Corpus text",
                          "The text the model learns from. Paste or type anything; drop a .txt file here")
        self.edit.setPlaceholderText("Paste or type a corpus here, or drop a text file…")
        self.open_button = named(QPushButton("Open file…"), "openCorpusButton", "Open corpus file",
                                 "Load a UTF-8 text file as the corpus")
        self.stats = named(QLabel(), "corpusStats", "Corpus statistics",
                           "Characters, distinct characters and the train/validation split")
        self.stats.setWordWrap(True)  # a big file's line would widen the dock past a 1280 px screen
        self.problem = named(QLabel(), "corpusProblem", "Corpus problem",
                             "What must be fixed before training can start")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020;")
        self.notice = named(QLabel(), "corpusNotice", "Corpus notice",
                            "A file that could not be opened; the current corpus is unchanged")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #a15c00;")
        self.notice.hide()
        self.progress = named(QProgressBar(), "corpusLoadProgress", "Loading progress",
                              "Reading the file")
        self.progress.setRange(0, 100)
        self.progress.hide()
        self.cancel = named(QPushButton("Cancel"), "cancelLoadButton", "Cancel loading",
                            "Stop downloading or reading; the corpus you had stays")
        self.cancel.hide()
        self.cancel.clicked.connect(self.cancel_loading)

        row = QHBoxLayout()
        row.addWidget(self.picker, 1)
        row.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.edit, 1)
        loading = QHBoxLayout()
        loading.addWidget(self.progress, 1)
        loading.addWidget(self.cancel)
        layout.addLayout(loading)
        layout.addWidget(self.stats)
        layout.addWidget(self.problem)
        layout.addWidget(self.notice)

        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(self._text_edited)
        self.edit.textChanged.connect(self._debounce.start)
        self.picker.currentIndexChanged.connect(self._picked)
        self.open_button.clicked.connect(self.choose_file)
        self._picked()

    # -- what the rest of the window reads ----------------------------------------------
    def text(self) -> str:
        return self._text

    def name(self) -> str:
        return self._name

    def choice(self) -> str:
        return self.picker.currentData()

    def problem_text(self) -> str:
        return self.problem.text()

    def set_split(self, block_size: int, val_fraction: float) -> None:
        if (block_size, val_fraction) != (self._block_size, self._val_fraction):
            self._block_size, self._val_fraction = block_size, val_fraction
            self._refresh()

    def set_custom_text(self, text: str) -> None:
        """Switch to Custom with this text, applied at once (no typing debounce)."""
        self.select(CUSTOM)
        self._debounce.stop()
        self._set_text("pasted text", text, editable=True)

    def select(self, key: str) -> bool:
        index = self.picker.findData(key)
        if index >= 0:
            self.picker.setCurrentIndex(index)
        return index >= 0

    # -- sources ------------------------------------------------------------------------
    @staticmethod
    def _source_label(key: str) -> str:
        source = SOURCES[key]
        where = "" if local_copy(key) is not None else f", downloads once ({source.size_text})"
        return f"{key} - {source.title}{where}"

    @Slot()
    def _picked(self) -> None:
        key = self.picker.currentData()
        if key == CUSTOM:
            self._from_file = False
            self.edit.setReadOnly(False)
            self._name, self._shown = "pasted text", CUSTOM
            self._text_edited()
            return
        if key in SOURCES:
            self._load(key, local_copy(key), key)
            return
        self._shown = key
        self._set_text(key, builtin_text(key), editable=False)

    def _set_text(self, name: str, text: str, editable: bool) -> None:
        self._name, self._text = name, text
        self._from_file = len(text) > PREVIEW_CHARS
        self.edit.blockSignals(True)
        self.edit.setPlainText(text[:PREVIEW_CHARS])
        self.edit.blockSignals(False)
        self.edit.setReadOnly(not editable or self._from_file)
        self._refresh()

    @Slot()
    def _text_edited(self) -> None:
        if self.edit.isReadOnly():
            return
        if self.picker.currentData() != CUSTOM:
            return
        self._text = self.edit.toPlainText()
        self._name = "pasted text"
        self._refresh()

    @Slot()
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a corpus", "", "Text files (*.txt);;All files (*)")
        if path:
            self.load_file(path)

    def load_file(self, path: str) -> None:
        """Read the file on a worker thread; the box keeps its text until the file is in."""
        self._load(Path(path).name, Path(path), CUSTOM)

    def _load(self, name: str, path: Optional[Path], entry: str) -> None:
        """Read a file (first downloading a public-domain text when path is None) on a worker,
        with progress and Cancel; on failure or cancel the corpus in the box stays."""
        if self._loader is not None and self._loader.is_running():
            return
        self.progress.setValue(0)
        self.progress.setFormat("downloading %p%" if path is None else "reading %p%")
        for widget in (self.progress, self.cancel):
            widget.show()
        self.open_button.setEnabled(False)
        self._arrived = False
        holder = []  # the worker, weakly: its own closure must not keep it alive

        def load():
            from playground.engine import download
            from playground.engine.corpus import read_text_file
            source = path
            if source is None:
                for done, total in download.fetch(SOURCES[name]):
                    yield ("progress", 100 * done / total)
                source = download.cached_path(SOURCES[name])
            emit = holder[0]().yielded.emit
            yield ("text", read_text_file(source, lambda f: emit(("progress", f * 100))))

        worker = GeneratorWorker(load, "corpus-loader")
        holder.append(weakref.ref(worker))
        worker.yielded.connect(self._loaded)
        worker.errored.connect(self._load_failed)
        worker.finished.connect(self._load_finished)
        self._pending = (name, entry)
        self._loader = WorkerHandle(worker, self)
        self._loader.start()

    @Slot()
    def cancel_loading(self) -> None:
        if self._loader is not None:
            self._loader.worker.abort()

    @Slot(object)
    def _loaded(self, item) -> None:
        kind, value = item
        if kind == "progress":
            self.progress.setValue(int(value))
            return
        self._arrived = True
        name, entry = self._pending
        self._show_entry(entry)
        self._shown = entry
        self.notice.hide()
        self._set_text(name, value, editable=entry == CUSTOM)

    def _show_entry(self, key: str) -> None:
        self.picker.blockSignals(True)
        if key in SOURCES:  # downloaded now: no longer "downloads once"
            self.picker.setItemText(self.picker.findData(key), self._source_label(key))
        self.picker.setCurrentIndex(max(self.picker.findData(key), 0))
        self.picker.blockSignals(False)

    @Slot(str)
    def _load_failed(self, message: str) -> None:
        # the current corpus stays as it was and stays usable
        self._arrived = True
        self.notice.setText(f"Could not open the corpus: {message}")
        self.notice.show()

    @Slot()
    def _load_finished(self) -> None:
        for widget in (self.progress, self.cancel):
            widget.hide()
        self.open_button.setEnabled(True)
        if not self._arrived:
            self.notice.setText("Cancelled: the corpus you had stays, and nothing was kept")
            self.notice.show()
        if self.picker.currentData() != self._shown:  # cancelled or failed: back to what is shown
            self._show_entry(self._shown or CUSTOM)

    def shutdown(self) -> None:
        if self._loader is not None:
            self._loader.stop()

    # -- drag and drop ------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            self.load_file(files[0])
            event.acceptProposedAction()

    # -- stats and problems -------------------------------------------------------------
    def _refresh(self) -> None:
        problem, text = "", self._text
        try:
            text = check_text(text)
        except CorpusError as exc:
            problem = str(exc)
        n = len(text)
        n_train, n_val = split_sizes(n, self._val_fraction, self._block_size)
        split = (f"train {n_train:,} / validation {n_val:,}" if n_val else
                 f"train {n_train:,} / validation unavailable (too short)")
        shown = " (preview shown; the whole file is used)" if self._from_file else ""
        self.stats.setText(f"{n:,} characters, {len(set(text)) if n else 0} distinct; {split}{shown}")
        problem = problem or too_short(self._block_size, n_train)
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.changed.emit()
