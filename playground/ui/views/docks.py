"""Dockable panels: each panel sits in a QDockWidget whose title bar carries its name, a "?"
that shows one paragraph about it, and float and close buttons. The View menu brings closed
panels back; the window remembers where they were."""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QTabBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from playground.ui.views.explain import help_key, help_text
from playground.ui.views.widgets import named, scrolled


class Dock(QDockWidget):
    def __init__(self, title: str, widget: QWidget, object_name: str, parent: QWidget, tab: str = "",
                 scroll: bool = False):
        """title: the panel's name on its title bar; tab: a shorter one for its tab (a tab
        bar of five long names is cut to "Gene…", "Atten…" on a laptop screen); scroll: a
        form that scrolls when the dock is short, instead of making the window taller than
        the screen."""
        super().__init__(tab or title, parent)
        self.setObjectName(object_name)
        self.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                         | QDockWidget.DockWidgetClosable)
        self.toggleViewAction().setText(title)
        key = help_key(title)
        self.help = help_text(title, key)
        self.help.hide()
        self.setTitleBarWidget(self._title_bar(title, key))
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 2, 6, 6)
        layout.addWidget(self.help)
        layout.addWidget(scrolled(widget) if scroll else widget, 1)
        self.setWidget(body)

    def _title_bar(self, title: str, key: str) -> QWidget:
        bar = QFrame()
        bar.setObjectName(f"{self.objectName()}Title")
        row = QHBoxLayout(bar)
        row.setContentsMargins(6, 2, 2, 0)
        row.addWidget(QLabel(f"<b>{title}</b>"))
        row.addStretch(1)
        self.help_button = named(QToolButton(), f"help{key}", f"What is {title}?",
                                 f"What is this? ({title})")
        self.help_button.setText("?")
        self.help_button.setCheckable(True)
        self.help_button.toggled.connect(self.help.setVisible)
        row.addWidget(self.help_button)
        for text, tip, slot in (("⧉", f"Float {title} in a window of its own", self._toggle_float),
                                ("✕", f"Close {title} (View menu brings it back)", self.close)):
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            button.setAutoRaise(True)
            button.clicked.connect(slot)
            row.addWidget(button)
        return bar

    @Slot()
    def _toggle_float(self) -> None:
        self.setFloating(not self.isFloating())

    def raise_tab(self) -> None:
        """Show this panel: open it if it was closed, bring its tab to the front."""
        self.show()
        self.raise_()


def tidy_tab_bars(window) -> None:
    """Dock tabs show their whole names (scroll arrows when there is no room, never "Gene…"),
    and a tab bar Qt left behind is hidden: tabifying docks one by one, QMainWindow (PySide6
    6.x) made a second bar for the grown group and left the first, "Samples | Health", shown
    over the settings panel's edge. A bar is left over when its tabs are not the group Qt
    holds for its first dock (tabifiedDockWidgets); a bar Qt uses, it shows again itself."""
    from shiboken6 import getCppPointer
    docks = {getCppPointer(dock)[0]: dock for dock in window.findChildren(QDockWidget)}
    for bar in window.findChildren(QTabBar):
        bar.setElideMode(Qt.ElideNone)
        bar.setUsesScrollButtons(True)
        first = docks.get(bar.tabData(0)) if bar.parentWidget() is window and bar.count() else None
        if first is not None:
            group = {getCppPointer(dock)[0] for dock in [first, *window.tabifiedDockWidgets(first)]}
            if {bar.tabData(i) for i in range(bar.count())} != group:
                bar.hide()


DOCK_AREAS = {"left": Qt.LeftDockWidgetArea, "right": Qt.RightDockWidgetArea,
              "bottom": Qt.BottomDockWidgetArea}


def add_view_menu(window, docks, reset) -> None:
    """View: a toggle for every panel, then Reset layout."""
    from PySide6.QtGui import QAction
    view = window.menuBar().addMenu("&View")
    view.setObjectName("viewMenu")
    for dock in docks:
        view.addAction(dock.toggleViewAction())
    view.addSeparator()
    action = QAction("&Reset layout", window)
    action.setObjectName("resetLayoutAction")
    action.triggered.connect(reset)
    view.addAction(action)
