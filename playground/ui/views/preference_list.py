"""The preference set as a list: each pair's prompt, chosen and rejected continuation, edited in
place (a newline written \\n), deleted, opened and saved as JSON Lines; a set not saved is never
replaced without asking."""

from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.engine.errors import ConfigError
from playground.ui.controllers.preference_control import PreferenceSet
from playground.ui.controllers.remembered import last_folder, remember_folder
from playground.ui.views.widgets import Message, compact, named

FIELDS = ("prompt", "chosen", "rejected")
RED = "color: #b00020;"


def escaped(text: str) -> str:
    """A text on one line of the table: a newline as \\n, a tab as \\t, a backslash as \\\\."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unescaped(text: str) -> str:
    """What escaped() wrote, back as it was (a lone backslash stays one)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "\\nt":
            out.append({"\\": "\\", "n": "\n", "t": "\t"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class PairsList(QWidget):
    failed = Signal()   # a file could not be opened: its message is shown here

    def __init__(self, pairs: PreferenceSet, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.pairs = pairs
        # asks "save, discard or cancel?" about an unsaved set; the window gives its own question
        self.ask: Callable[[str, str], str] = lambda text, detail: "cancel"
        self.counts = named(Message(lines=2), "preferenceCounts", "Preference set", "The pairs rated, ties, skips")
        self.table = named(QTableWidget(0, 3), "pairsTable", "Preference pairs",
                           "Each pair: the prompt, the continuation chosen and the one rejected. Double-click a "
                           "cell to edit it (a newline is written \\n)")
        self.table.setHorizontalHeaderLabels([f.title() for f in FIELDS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setWordWrap(False)
        self.delete = named(QPushButton("Delete pair"), "deletePairButton", "Delete pair",
                            "Delete the selected pairs from the set (Delete, in the list)")
        # the key only in the list: Delete in any text field of the window edits that field
        QShortcut(QKeySequence.Delete, self.table, self.delete_selected, context=Qt.WidgetShortcut)
        self.open = named(QPushButton("Open…"), "openPairsButton", "Open pairs",
                          "Open a preference set: JSON Lines of prompt, chosen and rejected (TRL's field names)")
        self.save = named(QPushButton("Save…"), "savePairsButton", "Save pairs",
                          "Save the preference set as JSON Lines, one {prompt, chosen, rejected} a line")
        self.pairs_problem = named(Message(lines=3), "pairsProblem", "Pairs problem",
                                   "Why the last open, save or edit did not happen")
        self.pairs_problem.hide()
        compact([self.delete, self.open, self.save])
        buttons = QHBoxLayout()
        for button in (self.open, self.save, self.delete):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)   # a page of the Preferences tabs: their margins
        layout.addWidget(self.counts)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.pairs_problem)
        layout.addLayout(buttons)
        self.delete.clicked.connect(self.delete_selected)
        self.open.clicked.connect(self.ask_open)
        self.save.clicked.connect(self.ask_save)
        self.table.itemChanged.connect(self._cell_edited)
        pairs.changed.connect(self._refresh_set)
        self._refresh_set()

    @Slot()
    def _refresh_set(self) -> None:
        counts = self.pairs.counts()
        self.counts.setText(f"{self.pairs.path.name}: {counts}." if self.pairs.path else f"{counts.capitalize()}.")
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.pairs.pairs))
        for row, pair in enumerate(self.pairs.pairs):
            for column, field in enumerate(FIELDS):
                text = getattr(pair, field)
                item = self.table.item(row, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, column, item)
                item.setText(escaped(text))
                item.setToolTip(text)
        self.table.blockSignals(False)
        self.delete.setEnabled(bool(self.pairs.pairs))

    @Slot(QTableWidgetItem)
    def _cell_edited(self, item: QTableWidgetItem) -> None:
        problem = self.pairs.edit(item.row(), FIELDS[item.column()], unescaped(item.text()))
        self._say(f"Not changed: {problem}" if problem else "", error=True)
        if problem:
            self._refresh_set()   # the cell shows the pair as it still is

    @Slot()
    def delete_selected(self) -> None:
        for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.pairs.remove(row)

    def may_discard(self, doing: str) -> bool:
        """Before the set is replaced or the window closes: True when it may be (saved, saved now
        or discarded), False when the user cancelled."""
        if not self.pairs.unsaved or not self.pairs.pairs:
            return True
        n = len(self.pairs.pairs)
        answer = self.ask(f"The preference set ({n} pair{'s' * (n != 1)}) is not saved.",
                          f"{doing} loses it. Save it first?")
        if answer == "save":
            return self.ask_save()
        return answer == "discard"

    @Slot()
    def ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a preference set", last_folder("pairs"),
                                              "JSON Lines (*.jsonl *.json);;All files (*)")
        if path:
            self.open_set(path)

    def open_set(self, path: str) -> bool:
        """Open a pairs file (asking first when the set in hand is not saved); a bad file's
        message is shown and the set in hand stays."""
        if not self.may_discard("Opening another set"):
            return False
        try:
            self.pairs.open(path)
        except (ConfigError, OSError) as exc:
            self._say(f"Could not open the preference set: {exc}", error=True)
            self.failed.emit()
            return False
        remember_folder("pairs", path)
        self._say("")
        return True

    @Slot()
    def ask_save(self) -> bool:
        start = str(self.pairs.path) if self.pairs.path else f"{last_folder('pairs')}/preferences.jsonl"
        path, _ = QFileDialog.getSaveFileName(self, "Save the preference set", start, "JSON Lines (*.jsonl)")
        return bool(path) and self.save_set(path)

    def save_set(self, path: str) -> bool:
        try:
            saved = self.pairs.save(path)
        except (ConfigError, OSError) as exc:
            self._say(f"The preference set was not saved: {exc}", error=True)
            return False
        remember_folder("pairs", str(saved))
        self._say(f"Saved {saved}")
        return True

    def _say(self, message: str, error: bool = False) -> None:
        self.pairs_problem.setText(message)
        self.pairs_problem.setStyleSheet(RED if error else "")
        self.pairs_problem.setVisible(bool(message))
