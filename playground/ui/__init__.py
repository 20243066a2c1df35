"""The Qt layer: the only code that imports PySide6 or pyqtgraph."""


def __getattr__(name):
    # `from playground.ui import MainWindow` without importing Qt for every ui submodule user
    if name == "MainWindow":
        from playground.ui.main_window import MainWindow
        return MainWindow
    raise AttributeError(name)
