"""Attention heatmaps: for the prompt (or a selected output span), one layer and head at a
time, characters on both axes; rows are queries, columns the characters they look at. The
axes say which is which, and a colour bar fixed at 0..1 says what a colour means."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from playground.engine.wording import plural
from playground.ui.views.odds_view import shown
from playground.ui.views.widgets import Message, named


class AttentionView(QWidget):
    refreshRequested = Signal()

    def __init__(self, control, parent: Optional[QWidget] = None):
        """control: the GenerationController that computes the maps this shows."""
        super().__init__(parent)
        self.maps: Optional[np.ndarray] = None   # (layers, heads, T, T)
        self.chars: list[str] = []
        self.layer = named(QSpinBox(), "layerSpin", "Layer", "Which block's attention to show (0 is the first)")
        self.head = named(QSpinBox(), "headSpin", "Head", "Which attention head of that layer to show")
        self.refresh = named(QPushButton("Show attention"), "attentionButton", "Show attention",
                             "Compute attention for the prompt (or the selected output text) "
                             "with the latest weights")
        self.info = named(Message("Type a prompt, then Show attention", lines=2), "attentionInfo",
                          "Attention info", "What the heatmap shows")
        self.plot = named(pg.PlotWidget(background="w"), "attentionPlot", "Attention heatmap",
                          "Row: the character that is predicting; column: a character it may look at. "
                          "Brighter means more attention; the empty upper triangle is the future")
        item = self.plot.getPlotItem()
        item.invertY(True)
        item.setLabel("left", "query: the token predicting")
        item.setLabel("bottom", "key: the token looked at")
        self.plot.setAspectLocked(False)  # fill the panel: a tall dock must not push the axis away
        self.image = pg.ImageItem(levels=(0.0, 1.0))
        self.plot.addItem(self.image)
        for side in ("left", "bottom"):  # token labels go here; before any, no numbers at all
            item.getAxis(side).enableAutoSIPrefix(False)
            item.getAxis(side).setTicks([[]])
        self.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        # fixed at 0..1, not fitted to each map: a colour means the same weight in every head
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=pg.colormap.get("viridis"),
                                        label="attention weight", interactive=False, colorMapMenu=False)
        self.colorbar.setImageItem(self.image, insert_in=item)
        bar = QHBoxLayout()
        for text, widget in (("Layer", self.layer), ("Head", self.head)):
            bar.addWidget(QLabel(text))
            bar.addWidget(widget)
        bar.addWidget(self.refresh)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.info)
        layout.addWidget(self.plot, 1)
        self.refresh.clicked.connect(self.refreshRequested)
        self.layer.valueChanged.connect(self._draw)
        self.head.valueChanged.connect(self._draw)
        control.attentionReady.connect(self._ready)

    @Slot(object)
    def _ready(self, result: tuple) -> None:
        chars, maps, step = result
        self.set_maps(chars, np.asarray(maps), step)

    def set_maps(self, chars: list[str], maps: np.ndarray, step: int) -> None:
        self.chars, self.maps = chars, maps
        self.layer.setMaximum(maps.shape[0] - 1)
        self.head.setMaximum(maps.shape[1] - 1)
        self.info.setText(f"{plural(len(chars), 'token')}, weights of step {step:,}; "
                          f"{plural(maps.shape[0], 'layer')} x {plural(maps.shape[1], 'head')}")
        self._draw()

    def current(self) -> Optional[np.ndarray]:
        if self.maps is None:
            return None
        return self.maps[self.layer.value(), self.head.value()]

    def _draw(self) -> None:
        grid = self.current()
        if grid is None:
            return
        # ImageItem indexes [x, y]: transpose so rows are queries (y) and columns keys (x)
        self.image.setImage(grid.T, levels=(0.0, 1.0))
        ticks = [(i + 0.5, shown(c)) for i, c in enumerate(self.chars)]
        self.plot.getPlotItem().getAxis("bottom").setTicks([ticks])
        self.plot.getPlotItem().getAxis("left").setTicks([ticks])
        self.plot.setRange(xRange=(0, len(self.chars)), yRange=(0, len(self.chars)), padding=0.02)
