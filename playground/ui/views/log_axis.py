"""A logarithmic axis for pyqtgraph whose labels never run into each other, for the Scaling tab's
log-log plot: as many labels as fit, at decades, then 1-3 or 1-2-5 within them as room allows."""

from __future__ import annotations

import math

import pyqtgraph as pg


class LogAxis(pg.AxisItem):
    """A log axis whose labels never overlap: as many as fit its length (LABEL_PX apart), at
    decades, then 1-3, 1-2-5 ... within them as room allows, or round numbers inside a decade;
    the other eight marks of each decade are unlabelled ticks. pyqtgraph's own labels every one
    of them, and on a narrow dock they run into each other."""

    LABEL_PX = {"bottom": 70, "top": 70, "left": 28, "right": 28}

    def __init__(self, orientation: str, **kwargs):
        super().__init__(orientation, **kwargs)
        self.setStyle(maxTextLevel=0)  # only the first level (the chosen ticks) is labelled

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802, N803 (Qt's names)
        if not self.logMode or not (math.isfinite(minVal) and math.isfinite(maxVal)):
            return super().tickValues(minVal, maxVal, size)
        low, high = sorted((minVal, maxVal))
        labelled = log_ticks(low, high, max(2, int(size // self.LABEL_PX[self.orientation])))
        minor = [v for v in _marks(low, high, range(2, 10)) if all(abs(v - t) > 1e-6 for t in labelled)]
        return [(1.0, labelled), (None, minor if len(minor) < size / 4 else [])]  # a tick per 4 px at most

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph's name)
        if not self.logMode:
            return super().tickStrings(values, scale, spacing)
        return [short_number(10 ** v * scale) for v in values]


MANTISSAS = ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), tuple(range(1, 10)))


def _marks(low: float, high: float, mantissas) -> list[float]:
    """log10 of every m·10^d (m in mantissas) between 10^low and 10^high."""
    marks = (d + math.log10(m) for d in range(math.floor(low), math.ceil(high) + 1) for m in mantissas)
    return [v for v in marks if low - 1e-9 <= v <= high + 1e-9]


def log_ticks(low: float, high: float, room: int) -> list[float]:
    """At most `room` labelled positions (log10 values) between low and high: every k-th decade
    (k = 2, 5, 10 ...) when the decades alone are too many, else the densest of MANTISSAS that
    fits; round numbers on an even step when that leaves fewer than two (inside about a decade)."""
    decades = _marks(low, high, (1,))
    if len(decades) > room:  # every 2nd, 5th, 10th ... decade: 10^0, 10^5, 10^10
        every = ([d for d in decades if round(d) % (m * 10 ** e) == 0] for e in range(4) for m in (1, 2, 5))
        return next((marks for marks in every if len(marks) <= room), decades[:1])
    best = decades
    for mantissas in MANTISSAS[1:]:
        marks = _marks(low, high, mantissas)
        if len(marks) > room:
            break
        best = marks
    lo, hi = 10.0 ** low, 10.0 ** high
    if len(best) < 2 and hi > lo > 0:
        top = math.floor(math.log10(hi - lo))
        step = next(m * 10.0 ** e for e in range(top - 2, top + 2) for m in (1, 2, 5)
                    if (hi - lo) / (m * 10.0 ** e) < room)
        even = [math.log10(k * step) for k in range(math.ceil(lo / step), math.floor(hi / step) + 1) if k > 0]
        best = even if len(even) > len(best) else best
    return best


def short_number(x: float) -> str:
    """A tick label a few characters wide: 0.05, 2.5, 300, 20k, 1.5M, 3e12."""
    x = float(f"{x:.6g}")  # k x step is not exact in binary: 0.30000000000000004
    if x >= 1e9:
        mantissa, exponent = f"{x:.2e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if x >= 10 * size or (unit == "M" and x >= size):
            return f"{x / size:g}{unit}"
    return f"{x:g}"
