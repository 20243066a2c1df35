"""The corpus panel takes care of what the user has: a stalled download cancels, and the window
quits, at once; a download under way at quit never restarts by itself; the user's own text (and
its undo) survives looking at other texts; a read-only text says why it cannot change; old
notices go; Open starts in a sensible folder; counts read as words; long messages never widen."""

import os
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QDir, QMimeData, QPoint, QPointF, QSettings, QStandardPaths, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from playground.engine.data import download
from playground.engine.data.corpus import builtin_text
from playground.ui.main_window import SETTINGS_ENV, MainWindow
from tests.fileserver import BODY, STALLING, source

from .conftest import Answers

TYPED = "my own words, typed by hand"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """Downloads of this test only: a copy cached by another test must not count here."""
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "data"))
    return tmp_path / "data" / "corpora"


def new_window(qtbot) -> MainWindow:
    win = MainWindow()
    win.ask = Answers("discard")
    qtbot.addWidget(win)
    return win


def start_stalled_download(win, qtbot, server, monkeypatch) -> None:
    """Pick 'sherlock' from a server that sends its headers, then nothing for STALL_S."""
    monkeypatch.setitem(download.SOURCES, "sherlock", source(server + "/stall", "sherlock"))
    STALLING.clear()
    win.corpus.select("sherlock")
    qtbot.waitUntil(STALLING.is_set, timeout=5_000)
    assert not win.corpus.progress.isHidden() and win.corpus.progress.value() == 0


def type_own_text(win, qtbot, text: str = TYPED) -> None:
    win.corpus.select("custom")
    win.corpus.edit.clear()
    qtbot.keyClicks(win.corpus.edit, text)
    qtbot.waitUntil(lambda: win.corpus.text() == text)


def undo(win, qtbot) -> None:
    qtbot.keyClick(win.corpus.edit, Qt.Key_Z, Qt.ControlModifier)


def test_cancel_stops_a_stalled_download_at_once(window, qtbot, server, monkeypatch, data_dir):
    corpus = window.corpus
    before = corpus.text()
    start_stalled_download(window, qtbot, server, monkeypatch)
    corpus.cancel.click()
    # within about a second, though the server still sends nothing (it did wait STALL_S)
    qtbot.waitUntil(lambda: corpus.notice.text().startswith("Cancelled"), timeout=1_500)
    assert corpus.text() == before and corpus.choice() == "phrase" and corpus.progress.isHidden()
    assert [p.name for p in data_dir.iterdir()] == []  # no partial file


def test_closing_during_a_stalled_download_ends_its_thread(window, qtbot, server, monkeypatch, data_dir):
    start_stalled_download(window, qtbot, server, monkeypatch)
    thread = window.corpus._loader.thread
    began = time.monotonic()
    window.close()  # the window's closeEvent shuts the panel down
    # ended, not left running for Qt to destroy (which aborts the process)
    assert thread.isFinished() and time.monotonic() - began < 2


def test_a_newer_choice_wins_over_a_download_under_way(window, qtbot, server, monkeypatch, data_dir):
    corpus = window.corpus
    start_stalled_download(window, qtbot, server, monkeypatch)
    thread = corpus._loader.thread
    corpus.select("fable")  # changed their mind: the download stops, and never lands later
    QApplication.processEvents()  # whatever it still sent has arrived
    assert thread.isFinished() and corpus.progress.isHidden() and corpus.notice.isHidden()
    assert corpus.choice() == "fable" and corpus.text() == builtin_text("fable")


def test_a_download_under_way_at_quit_does_not_start_by_itself(qtbot, tmp_path, server, monkeypatch, data_dir):
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "settings.ini"))
    first = new_window(qtbot)
    first.corpus.select("fable")
    start_stalled_download(first, qtbot, server, monkeypatch)
    first.close()
    second = new_window(qtbot)
    assert second.corpus.choice() == "fable" and second.corpus.text() == builtin_text("fable")
    assert second.corpus.progress.isHidden()  # no download was started


def test_a_saved_text_not_on_this_computer_is_not_fetched_at_launch(qtbot, tmp_path, server, monkeypatch,
                                                                   data_dir):
    settings_file = str(tmp_path / "settings.ini")
    monkeypatch.setenv(SETTINGS_ENV, settings_file)
    saved = QSettings(settings_file, QSettings.IniFormat)  # as an older version left it
    saved.setValue("corpus/choice", "alice")
    saved.sync()
    monkeypatch.setitem(download.SOURCES, "alice", source(server + "/ok", "alice"))
    win = new_window(qtbot)
    assert win.corpus.choice() == "phrase" and win.corpus.progress.isHidden()
    notice = win.corpus.notice.text()
    assert not win.corpus.notice.isHidden() and "'alice' is not downloaded" in notice and "Nothing is lost" in notice
    download.download(download.SOURCES["alice"])  # once it is on this computer, it comes back
    again = new_window(qtbot)
    qtbot.waitUntil(lambda: again.corpus.text() == BODY.decode(), timeout=5_000)
    assert again.corpus.choice() == "alice"


def test_your_own_text_survives_looking_at_other_texts(window, qtbot):
    corpus = window.corpus
    type_own_text(window, qtbot)
    corpus.select("phrase")
    assert corpus.text() == builtin_text("phrase") and corpus.custom_text() == TYPED
    window.settings.preset.setCurrentIndex(window.settings.preset.findData("arithmetic"))
    assert corpus.choice() == "arithmetic"  # a preset picks its own corpus
    corpus.select("custom")
    assert corpus.text() == TYPED and corpus.edit.toPlainText() == TYPED
    undo(window, qtbot)  # the typing's history came back with it
    qtbot.waitUntil(lambda: corpus.text() != TYPED)
    assert TYPED.startswith(corpus.text())
    qtbot.keyClick(corpus.edit, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    qtbot.waitUntil(lambda: corpus.text() == TYPED)


def test_your_own_text_is_saved_while_a_built_in_is_in_use(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "settings.ini"))
    first = new_window(qtbot)
    first.corpus.set_custom_text(TYPED)
    first.corpus.select("fable")
    first.close()
    second = new_window(qtbot)
    assert second.corpus.choice() == "fable" and second.corpus.text() == builtin_text("fable")
    second.corpus.select("custom")
    assert second.corpus.text() == TYPED


@pytest.mark.parametrize("repeats", [10, 40_000])  # a small file, and one shown as a preview
def test_opening_a_file_over_your_text_can_be_undone(window, qtbot, tmp_path, repeats):
    corpus = window.corpus
    type_own_text(window, qtbot)
    book = tmp_path / "book.txt"
    book.write_text("a book line\n" * repeats)
    corpus.load_file(str(book))
    qtbot.waitUntil(lambda: corpus.text() == book.read_text(), timeout=5_000)
    assert corpus.choice() == "custom" and "Ctrl+Z" in corpus.notice.text()
    undo(window, qtbot)
    qtbot.waitUntil(lambda: corpus.text() == TYPED)
    assert corpus.custom_text() == TYPED and not corpus.edit.isReadOnly()


def drag(widget, mime: QMimeData) -> None:
    """A drag that enters the widget, then drops."""
    QApplication.sendEvent(widget, QDragEnterEvent(QPoint(5, 5), Qt.CopyAction, mime, Qt.LeftButton,
                                                   Qt.NoModifier))
    QApplication.sendEvent(widget, QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton,
                                              Qt.NoModifier))


def test_a_built_in_text_says_why_it_cannot_be_edited(window, qtbot):
    corpus, phrase = window.corpus, builtin_text("phrase")
    assert corpus.choice() == "phrase" and corpus.edit.isReadOnly()
    assert not corpus.hint.isHidden() and "'custom'" in corpus.hint.text()  # said before trying
    mime = QMimeData()
    mime.setText("dropped words")
    for attempt in [lambda: qtbot.keyClicks(corpus.edit, "x"),
                    lambda: qtbot.keyClick(corpus.edit, Qt.Key_V, Qt.ControlModifier),
                    lambda: drag(corpus.edit.viewport(), mime)]:
        corpus.notice.hide()
        attempt()
        assert not corpus.notice.isHidden()
        assert corpus.notice.text().startswith("'phrase' is a built-in text and cannot be edited")
        assert "choose 'custom'" in corpus.notice.text() and corpus.text() == phrase
    corpus.notice.hide()
    qtbot.keyClick(corpus.edit, Qt.Key_Down)  # moving about is not an attempt to edit
    assert corpus.notice.isHidden()
    corpus.select("custom")
    assert corpus.hint.text() == "" and not corpus.edit.isReadOnly()  # the line stays, empty


def test_a_file_dropped_on_the_box_opens(window, qtbot, tmp_path):
    book = tmp_path / "dropped.txt"
    book.write_text("dropped book " * 20)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(book))])
    window.corpus.select("custom")
    drag(window.corpus.edit.viewport(), mime)  # not its path pasted in as text
    qtbot.waitUntil(lambda: window.corpus.text() == book.read_text(), timeout=5_000)


def test_an_old_notice_goes_when_the_corpus_changes(window, qtbot, tmp_path):
    corpus, missing = window.corpus, str(tmp_path / "missing.txt")

    def fail_to_open():
        corpus.load_file(missing)
        qtbot.waitUntil(lambda: not corpus.notice.isHidden(), timeout=5_000)
        assert "does not exist" in corpus.notice.text()
    fail_to_open()
    corpus.select("fable")
    assert corpus.notice.isHidden()
    corpus.select("custom")
    fail_to_open()
    qtbot.keyClicks(corpus.edit, "more")
    qtbot.waitUntil(corpus.notice.isHidden)


def test_open_starts_in_the_folder_of_the_last_corpus_file(window, qtbot, tmp_path, monkeypatch):
    book = tmp_path / "books" / "book.txt"
    book.parent.mkdir()
    book.write_text("a book line\n" * 20)
    starts = []

    def dialog(parent, caption, folder, kinds):
        starts.append(folder)
        return (str(book), "") if len(starts) == 1 else ("", "")  # then the user cancels
    monkeypatch.setattr(QFileDialog, "getOpenFileName", dialog)
    window.corpus.choose_file()
    qtbot.waitUntil(lambda: window.corpus.text() == book.read_text(), timeout=5_000)
    window.corpus.choose_file()
    new_window(qtbot).corpus.choose_file()  # the next session too
    documents = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
    assert starts[0] in (documents, QDir.homePath()) and Path(starts[0]) != Path(os.getcwd())
    assert starts[1] == starts[2] == str(book.parent)


def test_counts_read_as_words(window):
    window.corpus.set_custom_text("a")
    assert window.corpus.stats.text().startswith("1 character, 1 distinct character;")
    window.corpus.set_custom_text("abb")
    assert window.corpus.stats.text().startswith("3 characters, 2 distinct characters;")


def test_a_long_message_never_widens_the_panel(window, qtbot, tmp_path):
    corpus = window.corpus

    def widths():
        return corpus.minimumSizeHint().width(), corpus.sizeHint().width()
    before = widths()
    deep = tmp_path.joinpath(*["a-long-folder-name-without-any-spaces-in-it"] * 12, "missing.txt")
    corpus.load_file(str(deep))
    qtbot.waitUntil(lambda: not corpus.notice.isHidden(), timeout=5_000)
    assert len(corpus.notice.text()) > 500 and widths() == before  # it wraps and elides instead
