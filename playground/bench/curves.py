"""Draw validation loss against training seconds for several runs into one PNG (pyqtgraph,
offscreen), for the README: `python -m playground.bench.curves CURVES.json OUT.png`.

CURVES.json: {"title": str, "goals": [loss, ...], "runs": {label: [[seconds, loss], ...]}}.
"""

from __future__ import annotations

import json
import os
import sys

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def draw(data: dict, out: str, size: tuple[int, int] = (900, 560)) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from pyqtgraph.exporters import ImageExporter
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])  # noqa: F841 - pyqtgraph needs one
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    widget = pg.PlotWidget(title=data.get("title", ""))
    widget.resize(*size)
    plot = widget.getPlotItem()
    plot.setLabel("bottom", "training time (s)")
    plot.setLabel("left", "validation loss (nats per character)")
    plot.showGrid(x=True, y=True, alpha=0.25)
    legend = plot.addLegend(offset=(-10, 10))
    for i, (label, points) in enumerate(data["runs"].items()):
        if not points:
            continue
        xs, ys = zip(*points)
        colour = COLOURS[i % len(COLOURS)]
        plot.plot(list(xs), list(ys), pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                  symbolBrush=colour, symbolPen=None, name=label)
    for goal in data.get("goals", []):
        line = pg.InfiniteLine(goal, angle=0, pen=pg.mkPen("#888888", width=1, style=pg.QtCore.Qt.DashLine),
                               label=f"{goal:g}", labelOpts={"position": 0.97, "color": "#555555"})
        plot.addItem(line)
    top = max((y for pts in data["runs"].values() for _, y in pts[1:]), default=3.0)
    plot.setYRange(min(data.get("goals", [1.4]) + [1.4]) - 0.05, min(top, 3.0) + 0.05)
    legend.setBrush(pg.mkBrush(255, 255, 255, 220))
    ImageExporter(plot).export(out)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m playground.bench.curves CURVES.json OUT.png", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        draw(json.load(f), args[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
