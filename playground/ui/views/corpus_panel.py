"""Corpus panel: built-in picker, an editable text box, Open file… and drag-and-drop, live stats.

The user's own text ("custom") keeps a document of its own, with its undo history, while the box
shows other texts; big files and downloads load on a worker thread with progress and Cancel.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QCoreApplication, QEvent, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QKeySequence, QPalette, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QPlainTextDocumentLayout,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from playground.engine.config import too_short
from playground.engine.data.corpus import BUILTINS, CorpusError, builtin_text, check_text, local_copy, split_sizes
from playground.engine.data.download import SOURCES
from playground.engine.wording import plural
from playground.ui.controllers import remembered as persist
from playground.ui.controllers.workers import GeneratorWorker, WorkerHandle
from playground.ui.views.widgets import Message, named

CUSTOM = "custom"
PREVIEW_CHARS = 200_000  # a QPlainTextEdit beyond this gets sluggish; the full text is kept aside
EDIT_TIP = "The text the model learns from. Paste or type anything; drop a .txt file here"
EDIT_KEYS = (QKeySequence.Paste, QKeySequence.Cut, QKeySequence.Undo, QKeySequence.Redo,
             QKeySequence.Delete, QKeySequence.DeleteStartOfWord, QKeySequence.DeleteEndOfWord)


class CorpusPanel(QWidget):
    changed = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self._text = ""              # the whole corpus in use (may be larger than the box shows)
        self._name = ""
        self._from_file = False      # a large text is shown as a read-only preview
        self._block_size, self._val_fraction = 32, 0.1
        self._loader: Optional[WorkerHandle] = None
        self._loading_name = ""       # what is being read or downloaded, until it is in or given up
        self._ignoring = False       # a superseded load's last signals are being discarded
        self._shown = ""             # the picker entry whose text is in use
        self._build()
        # the user's own text, exactly as given (None once typed in: the document is then the
        # truth; a document turns "\r\n" into "\n\n", so a file's text is kept as read)
        self._custom_text: Optional[str] = ""
        self._custom_name, self._custom_preview = "pasted text", False
        self._custom_cursor: Optional[QTextCursor] = None
        self._setting = False        # the panel, not the user, is changing the custom document
        self._custom_doc, self._view_doc = self._document(), self._document()
        self._view_doc.setUndoRedoEnabled(False)  # built-in and downloaded texts: never edited
        self._custom_doc.contentsChanged.connect(self._custom_changed)
        self._on_custom = False
        self._show_doc(self._custom_doc, editable=True)

        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(self._text_edited)
        self.edit.textChanged.connect(self._debounce.start)
        self.edit.installEventFilter(self)  # key presses: a hint when the text is read-only
        self.edit.viewport().installEventFilter(self)  # drops: files open, text may be refused
        self.picker.currentIndexChanged.connect(self._picked)
        self.open_button.clicked.connect(self.choose_file)
        self.cancel.clicked.connect(self.cancel_loading)
        self._picked()

    def _build(self) -> None:
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
        self.edit = named(QPlainTextEdit(), "corpusEdit", "Corpus text", EDIT_TIP)
        self.edit.setPlaceholderText("Paste or type a corpus here, or drop a text file…")
        self.open_button = named(QPushButton("Open file…"), "openCorpusButton", "Open corpus file",
                                 "Load a UTF-8 text file as your own corpus (custom)")
        # Message labels wrap anywhere and elide: a long path or address never widens the window
        self.hint = named(Message(lines=1), "corpusHint", "Corpus hint",
                          "Why the text cannot be edited, and where your own text is")
        palette = self.hint.palette()  # the placeholder's colour: quiet, in any theme
        palette.setColor(QPalette.WindowText, palette.color(QPalette.PlaceholderText))
        self.hint.setPalette(palette)
        self.stats = named(Message(lines=2), "corpusStats", "Corpus statistics",
                           "Characters, distinct characters and the train/validation split")
        self.problem = named(Message(lines=3), "corpusProblem", "Corpus problem",
                             "What must be fixed before training can start")
        self.problem.setStyleSheet("color: #b00020;")
        self.notice = named(Message(lines=3), "corpusNotice", "Corpus notice",
                            "What just happened to the corpus: a file that could not be opened, "
                            "a cancelled download, or where your own text went")
        self.notice.setStyleSheet("color: #a15c00;")
        self.notice.hide()
        self.progress = named(QProgressBar(), "corpusLoadProgress", "Loading progress",
                              "Reading the file")
        self.progress.setRange(0, 100)
        self.progress.hide()
        self.cancel = named(QPushButton("Cancel"), "cancelLoadButton", "Cancel loading",
                            "Stop downloading or reading; the corpus you had stays")
        self.cancel.hide()

        row = QHBoxLayout()
        row.addWidget(self.picker, 1)
        row.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.hint)
        loading = QHBoxLayout()
        loading.addWidget(self.progress, 1)
        loading.addWidget(self.cancel)
        layout.addLayout(loading)
        for label in (self.stats, self.problem, self.notice):
            layout.addWidget(label)

    def _document(self) -> QTextDocument:
        document = QTextDocument(self)  # the panel owns it: the box only shows it
        document.setDocumentLayout(QPlainTextDocumentLayout(document))
        document.setDefaultFont(self.edit.font())
        return document

    # -- what the rest of the window reads ----------------------------------------------
    def text(self) -> str:
        return self._text

    def name(self) -> str:
        return self._name

    def choice(self) -> str:
        """The picker's entry (during a download, the text in use is still in_use()'s)."""
        return self.picker.currentData()

    def in_use(self) -> str:
        """The picker entry whose text is the corpus now."""
        return self._shown

    def custom_text(self) -> str:
        """The user's own text, kept whether or not it is the corpus in use."""
        return self._custom_text if self._custom_text is not None else self._custom_doc.toPlainText()

    def loading(self) -> str:
        """What is being read or downloaded ('' when nothing is): until it is in, the corpus in
        use is the one before it, whatever the picker says."""
        return self._loading_name

    def problem_text(self) -> str:
        return self.problem.text()

    def set_split(self, block_size: int, val_fraction: float) -> None:
        if (block_size, val_fraction) != (self._block_size, self._val_fraction):
            self._block_size, self._val_fraction = block_size, val_fraction
            self._refresh()

    def set_custom_text(self, text: str) -> None:
        """Switch to Custom with this text, applied at once (no typing debounce); Ctrl+Z in the
        box brings back the text it replaced."""
        self._stop_loading()  # a file still loading into Custom must not replace it later
        self._put_custom("pasted text", text, undoable=True)
        if self.picker.currentData() == CUSTOM:
            self._show_custom()
        else:
            self.select(CUSTOM)

    def keep_custom_text(self, text: str) -> None:
        """Make this the user's own text without switching to it (a text saved last time)."""
        self._put_custom("pasted text", text, undoable=False)
        if self._on_custom:
            self._show_custom()

    def select(self, key: str) -> bool:
        index = self.picker.findData(key)
        if index >= 0:
            self.picker.setCurrentIndex(index)
        return index >= 0

    def reopen(self, key: str) -> bool:
        """Select what was in use when the window closed, but never start a download by itself:
        a public-domain text not on this computer leaves the default in use, and says so."""
        if key in SOURCES and local_copy(key) is None:
            self._say(f"'{key}' is not downloaded on this computer, so '{self._shown}' is in use. "
                      f"Nothing is lost: choose '{key}' in the list to download it "
                      f"({SOURCES[key].size_text}).")
            return False
        return self.select(key)

    # -- showing an entry ---------------------------------------------------------------
    @staticmethod
    def _source_label(key: str) -> str:
        source = SOURCES[key]
        where = "" if local_copy(key) is not None else f", downloads once ({source.size_text})"
        return f"{key} - {source.title}{where}"

    @Slot()
    def _picked(self) -> None:
        """The user (or a preset) chose an entry: it replaces whatever was loading."""
        key = self.picker.currentData()
        self._stop_loading()
        self.notice.hide()  # an old failure or cancel is about a corpus no longer in question
        if key == CUSTOM:
            self._show_custom()
        elif key in SOURCES:
            self._load(key, local_copy(key), key)
        else:
            self._show_view(key, key, builtin_text(key))

    def _show_custom(self) -> None:
        self._shown, self._name = CUSTOM, self._custom_name
        self._text, self._from_file = self.custom_text(), self._custom_preview
        self._show_doc(self._custom_doc, editable=not self._custom_preview)
        self._refresh()

    def _show_view(self, entry: str, name: str, text: str) -> None:
        """Show a built-in or downloaded text, read-only; the user's own text stays aside."""
        self._shown, self._name, self._text = entry, name, text
        self._from_file = len(text) > PREVIEW_CHARS
        self._view_doc.setPlainText(text[:PREVIEW_CHARS])
        self._show_doc(self._view_doc, editable=False)
        self._debounce.stop()
        self._refresh()

    def _show_doc(self, document: QTextDocument, editable: bool) -> None:
        on_custom = document is self._custom_doc
        if on_custom != self._on_custom:
            if self._on_custom:  # back later at the same place
                self._custom_cursor = self.edit.textCursor()
            self.edit.blockSignals(True)
            self.edit.setDocument(document)
            if on_custom and self._custom_cursor is not None:
                self.edit.setTextCursor(self._custom_cursor)
            self.edit.blockSignals(False)
            self._on_custom = on_custom
        self.edit.setReadOnly(not editable)
        # the line is always there (empty for your own text), so the box keeps its height
        self.hint.setText("" if editable else self._read_only_reason(short=True))
        self.edit.setToolTip(EDIT_TIP if editable else self._read_only_reason(short=False))

    def _read_only_reason(self, short: bool) -> str:
        if self._shown == CUSTOM:
            undo = " Ctrl+Z brings back the text you had before it." if (
                self._custom_doc.isUndoAvailable()) else ""
            return ("A preview of a big file, read only; the whole file is used" if short else
                    f"A preview of {self._name}, too big to edit here; the whole file is used.{undo}")
        kind = "a built-in text" if self._shown in BUILTINS else "a downloaded public-domain text"
        if short:
            return "Read only: choose 'custom' to type or paste your own text"
        return (f"'{self._shown}' is {kind} and cannot be edited: choose 'custom' in the list to "
                "paste or type your own (your own text is kept while you look at others)")

    # -- the user's own text ------------------------------------------------------------
    def _put_custom(self, name: str, text: str, undoable: bool) -> None:
        """Make `text` the user's own text; undoable: one Ctrl+Z in the box brings back the one
        it replaced (a select-all-and-type edit, where setPlainText would clear the history)."""
        self._setting = True
        try:
            if undoable:
                cursor = QTextCursor(self._custom_doc)
                cursor.beginEditBlock()
                cursor.select(QTextCursor.Document)
                cursor.insertText(text[:PREVIEW_CHARS])
                cursor.endEditBlock()
            else:
                self._custom_doc.setPlainText(text[:PREVIEW_CHARS])
        finally:
            self._setting = False
        self._custom_text, self._custom_name = text, name
        self._custom_preview = len(text) > PREVIEW_CHARS
        self._debounce.stop()  # not typing: no notice is cleared, no name changes

    @Slot()
    def _custom_changed(self) -> None:
        if not self._setting:  # typed, pasted or undone: the document is the truth from now
            self._custom_text, self._custom_name = None, "pasted text"

    @Slot()
    def _text_edited(self) -> None:
        """The user changed their own text (after a short pause in typing): it is the corpus."""
        if not self._on_custom or self._custom_preview:
            return
        self.notice.hide()
        self._show_custom()

    def _undo_preview(self) -> None:
        """Ctrl+Z on a big file's read-only preview: the text the file replaced comes back."""
        self._custom_doc.undo()
        self._custom_doc.clearUndoRedoStacks(QTextDocument.RedoStack)  # no redo to a bare preview
        self._custom_text, self._custom_name, self._custom_preview = None, "pasted text", False
        self.notice.hide()
        self._show_custom()

    # -- typing, pasting and dropping ---------------------------------------------------
    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind == QEvent.KeyPress and watched is self.edit and self.edit.isReadOnly():
            if self._on_custom and event.matches(QKeySequence.Undo) and self._custom_doc.isUndoAvailable():
                self._undo_preview()
                return True
            if _changes_text(event):  # the box ignores it: say why, and where to type
                self._say(self._read_only_reason(short=False))
        elif kind in (QEvent.DragEnter, QEvent.DragMove, QEvent.Drop) and watched is self.edit.viewport():
            return self._dragged(event)
        return super().eventFilter(watched, event)

    def _dragged(self, event) -> bool:
        mime = event.mimeData()
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
        if files:  # a file dropped on the box opens, rather than pasting its path in
            event.acceptProposedAction()
            if event.type() == QEvent.Drop:
                self.load_file(files[0])
            return True
        if not (self.edit.isReadOnly() and mime.hasText()):
            return False  # the box takes the text itself
        if event.type() == QEvent.Drop:
            event.ignore()  # refused: the drag's source keeps its text
            self._say(self._read_only_reason(short=False))
        else:
            event.acceptProposedAction()  # so that the drop arrives, and the reason is shown
        return True

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            self.load_file(files[0])
            event.acceptProposedAction()

    # -- files and downloads ------------------------------------------------------------
    @Slot()
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a corpus", persist.last_folder("corpora"),
                                              "Text files (*.txt);;All files (*)")
        if path:
            self.load_file(path)

    def load_file(self, path: str) -> None:
        """Read the file on a worker thread into Custom; the box keeps its text until it is in."""
        persist.remember_folder("corpora", path)
        self.notice.hide()
        self._load(Path(path).name, Path(path), CUSTOM)

    def _load(self, name: str, path: Optional[Path], entry: str) -> None:
        """Read a file (first downloading a public-domain text when path is None) on a worker,
        with progress and Cancel; on failure or cancel the corpus in use stays."""
        self._stop_loading()
        self.progress.setValue(0)
        self.progress.setFormat("downloading %p%" if path is None else "reading %p%")
        for widget in (self.progress, self.cancel):
            widget.show()
        self.open_button.setEnabled(False)
        self._arrived = False
        self._loading_name = name
        self.changed.emit()  # Train waits for it
        holder = []  # the worker, weakly: its own closure must not keep it alive

        def load():  # the task is the engine's; this only carries its reports across
            from playground.engine.data.corpus import load_text
            worker = holder[0]()
            text = load_text(SOURCES[name] if path is None else path, lambda: worker.aborted,
                             lambda percent: worker.yielded.emit(("progress", percent)))
            if text is not None:  # None: cancelled, and the panel says so
                yield ("text", text)

        worker = GeneratorWorker(load, "corpus-loader")
        holder.append(weakref.ref(worker))
        worker.yielded.connect(self._loaded)
        worker.errored.connect(self._load_failed)
        worker.finished.connect(self._load_finished)
        self._pending = (name, entry)
        # no parent: the thread lives exactly as long as this reference, which is dropped only
        # once the thread has ended (_stop_loading), so nothing can destroy it while it runs
        self._loader = WorkerHandle(worker)
        self._loader.start()

    @Slot()
    def cancel_loading(self) -> None:
        if self._loader is not None:
            self._loader.worker.abort()

    def _stop_loading(self) -> None:
        """End the load in progress, if any, and wait for its thread: short, since downloads and
        reads look at the abort flag between short waits. What it still sent is discarded."""
        loader, self._loader = self._loader, None
        if loader is None:
            return
        loader.worker.abort()
        loader.thread.quit()
        loader.thread.wait()
        self._ignoring = True
        try:
            QCoreApplication.sendPostedEvents(self)  # its queued signals, now, to be ignored
        finally:
            self._ignoring = False
        for widget in (self.progress, self.cancel):
            widget.hide()
        self.open_button.setEnabled(True)
        self._loading_name = ""

    @Slot(object)
    def _loaded(self, item) -> None:
        if self._ignoring:
            return
        kind, value = item
        if kind == "progress":
            self.progress.setValue(int(value))
            return
        self._arrived = True
        self._loading_name = ""  # the text in use is the new one from now
        name, entry = self._pending
        self.notice.hide()
        self._show_entry(entry)
        if entry != CUSTOM:
            self._show_view(entry, name, value)
            return
        replaced = self.custom_text()
        self._put_custom(name, value, undoable=True)
        self._show_custom()
        if replaced.strip() and replaced != value:  # an explicit Open, but say how to go back
            self._say(f"Opened {name} in place of your own text: Ctrl+Z in the box brings that text back")

    def _show_entry(self, key: str) -> None:
        self.picker.blockSignals(True)
        if key in SOURCES:  # downloaded now: no longer "downloads once"
            self.picker.setItemText(self.picker.findData(key), self._source_label(key))
        self.picker.setCurrentIndex(max(self.picker.findData(key), 0))
        self.picker.blockSignals(False)

    @Slot(str)
    def _load_failed(self, message: str) -> None:
        if self._ignoring:
            return
        # the current corpus stays as it was and stays usable
        self._arrived = True
        self._say(f"Could not open the corpus: {message}")

    @Slot()
    def _load_finished(self) -> None:
        if self._ignoring:
            return
        for widget in (self.progress, self.cancel):
            widget.hide()
        self.open_button.setEnabled(True)
        self._loading_name = ""
        if not self._arrived:
            self._say("Cancelled: the corpus you had stays, and nothing was kept")
        if self.picker.currentData() != self._shown:  # cancelled or failed: back to what is shown
            self._show_entry(self._shown or CUSTOM)
        self.changed.emit()

    def shutdown(self) -> None:
        """Cancel any load and wait until its thread has ended (soon, see _stop_loading), so that
        closing the window never destroys a running thread."""
        self._stop_loading()

    # -- stats, problems and notices ----------------------------------------------------
    def _say(self, message: str) -> None:
        self.notice.setText(message)
        self.notice.show()

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
        distinct = plural(len(set(text)) if n else 0, "distinct character")
        self.stats.setText(f"{plural(n, 'character')}, {distinct}; {split}{shown}")
        problem = problem or too_short(self._block_size, n_train)
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.changed.emit()


def _changes_text(event) -> bool:
    """Whether a key press would change an editable text: a character, Backspace, Enter, a paste,
    a cut or an undo (not moving about, selecting or copying)."""
    if any(event.matches(key) for key in EDIT_KEYS):
        return True
    if event.key() in (Qt.Key_Backspace, Qt.Key_Delete, Qt.Key_Return, Qt.Key_Enter):
        return True
    text = event.text()
    return bool(text) and text.isprintable() and not event.modifiers() & (Qt.ControlModifier | Qt.AltModifier)
