"""Remember the window between sessions: geometry, preset, settings, the corpus in use, the
user's own text and the folder corpus files were last opened from."""

from __future__ import annotations

import os

from PySide6.QtCore import QByteArray, QDir, QSettings, QStandardPaths

SETTINGS_ENV = "PLAYGROUND_SETTINGS_FILE"  # tests point this at a temporary file
MAX_SAVED_TEXT = 1_000_000  # a pasted corpus above this is not written to the settings file
LAYOUT_VERSION = 3          # the dock layout; 1 was the fixed three-column splitter, 2 had six tabs on the right


def app_settings() -> QSettings:
    path = os.environ.get(SETTINGS_ENV)
    return QSettings(path, QSettings.IniFormat) if path else QSettings("GPT Playground", "GPT Playground")


def save_window(window, settings: QSettings) -> None:
    settings.setValue("geometry", window.saveGeometry())
    settings.setValue("dockState", window.saveState(LAYOUT_VERSION))
    settings.setValue("preset", window.settings.preset.currentData())
    for key, value in window.settings.remembered().items():  # every setting the window shows
        settings.setValue(f"settings/{key}", value)
    # the corpus in use, not the picker's entry: that may be a download still under way
    settings.setValue("corpus/choice", window.corpus.in_use())
    own = window.corpus.custom_text()  # kept even while a built-in text is in use
    if len(own) <= MAX_SAVED_TEXT:
        settings.setValue("corpus/text", own)
    settings.setValue("generate/temperature", window.generation.temperature.value())
    settings.setValue("generate/length", window.generation.length.value())
    settings.setValue("run/tensorboard", window.tensorboard_action.isChecked())
    settings.sync()


def restore_window(window, settings: QSettings) -> None:
    """Apply saved values; anything missing or malformed keeps its default."""
    geometry = settings.value("geometry")
    if isinstance(geometry, QByteArray):
        window.restoreGeometry(geometry)
    docks = settings.value("dockState")
    if isinstance(docks, QByteArray) and window.restoreState(docks, LAYOUT_VERSION):
        window._proportions_pending = False  # the user's own arrangement stays as it was
    preset = settings.value("preset")
    if isinstance(preset, str) and window.settings.preset.findData(preset) >= 0:
        window.settings.apply_preset(preset)
    text = settings.value("corpus/text")
    if isinstance(text, str):
        window.corpus.keep_custom_text(text)
    choice = settings.value("corpus/choice")
    if isinstance(choice, str):
        window.corpus.reopen(choice)  # never starts a download by itself
    window.settings.recall({key: settings.value(f"settings/{key}") for key in window.settings.fields})
    _set(window.generation.temperature, settings.value("generate/temperature"), int)
    _set(window.generation.length, settings.value("generate/length"), int)
    if str(settings.value("run/tensorboard")).lower() == "true":
        window.log_to_tensorboard(True, quiet=True)


def last_folder(kind: str) -> str:
    """Where a file dialog for this kind of file ("corpora", ...) starts: the folder one was last
    opened from, else the user's documents folder (or home), never the folder the app happened
    to be started in."""
    saved = app_settings().value(f"paths/{kind}")
    if isinstance(saved, str) and os.path.isdir(saved):
        return saved
    documents = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
    return documents if documents and os.path.isdir(documents) else QDir.homePath()


def remember_folder(kind: str, path: str) -> None:
    """Remember the folder of a file just opened, for the next dialog of its kind."""
    settings = app_settings()
    settings.setValue(f"paths/{kind}", os.path.dirname(os.path.abspath(path)))
    settings.sync()


def _set(widget, value, kind) -> None:
    try:
        if value is not None:
            widget.setValue(kind(value))
    except (TypeError, ValueError):
        pass
