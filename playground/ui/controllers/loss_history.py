"""The loss plot's data, apart from its drawing: each step's loss, a debiased moving average
over it (as TensorBoard smooths), the validation points, a fine-tune's original-text points (what
it forgets), and the seconds of training at each, in growable float64 arrays. Plain Python: no Qt."""

from __future__ import annotations

import csv
import math
from typing import Optional

import numpy as np


class Series:
    """A growable pair of float64 arrays."""

    def __init__(self, capacity: int = 1024):
        self.x = np.empty(capacity)
        self.y = np.empty(capacity)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1

    def clear(self) -> None:
        self.n = 0

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]



class LossHistory:
    def __init__(self, smoothing: float):
        self.raw, self.smooth, self.val = Series(), Series(), Series()
        self.original = Series()         # a fine-tune: the loss on the base's original text
        self.times = Series()            # (step, elapsed seconds) for the time axis
        self.val_times, self.original_times = Series(), Series()
        self.smoothing = smoothing       # weight of the past in the moving average
        self._ema, self._ema_weight = 0.0, 0.0
        self._time_offset = 0.0          # seconds of earlier runs of the same model
        self.to_bpc = 1 / math.log(2)    # nats per token -> bits per character (1 character a token)
        self.per_char = False            # show bits per character instead of nats per token

    def set_chars_per_token(self, chars_per_token: float) -> None:
        self.to_bpc = 1 / (math.log(2) * max(chars_per_token, 1e-9))

    @property
    def scale(self) -> float:
        """What a loss in nats per token is multiplied by to be shown."""
        return self.to_bpc if self.per_char else 1.0

    def clear(self) -> None:
        for series in (self.raw, self.smooth, self.val, self.original, self.times, self.val_times,
                       self.original_times):
            series.clear()
        self._ema = self._ema_weight = 0.0
        self._time_offset = 0.0

    def continue_run(self) -> None:
        """The same model trains on: time continues from the last point."""
        self._time_offset = self.times.y[self.times.n - 1] if self.times.n else 0.0

    def rewind(self, step: int) -> None:
        """Drop the points after `step`: the model in hand went back to it (the run kept its
        best weights), so training goes on from there."""
        for series, times in ((self.raw, self.times), (self.val, self.val_times),
                              (self.original, self.original_times)):
            keep = int(np.searchsorted(series.x[: series.n], step, side="right"))
            series.n = min(series.n, keep)
            times.n = min(times.n, keep)
        self.smooth.n = self.raw.n
        self.set_smoothing(self.smoothing)
        self.continue_run()

    def add_step(self, step: int, loss: float, elapsed: float) -> bool:
        if not math.isfinite(loss):
            return False
        self.raw.append(step, loss)
        self.times.append(step, self._time_offset + elapsed)
        a = self.smoothing
        self._ema = a * self._ema + (1 - a) * loss
        self._ema_weight = a * self._ema_weight + (1 - a)
        self.smooth.append(step, self._ema / self._ema_weight)
        return True

    def add_validation(self, step: int, loss: Optional[float], elapsed: float) -> bool:
        if loss is None or not math.isfinite(loss):
            return False
        self.val.append(step, loss)
        self.val_times.append(step, self._time_offset + elapsed)
        return True

    def add_original(self, step: int, loss: Optional[float], elapsed: float) -> bool:
        """A fine-tune's loss on the base's original text at an evaluation (step 0: before it)."""
        if loss is None or not math.isfinite(loss):
            return False
        self.original.append(step, loss)
        self.original_times.append(step, self._time_offset + elapsed)
        return True

    def set_smoothing(self, smoothing: float) -> None:
        """Recompute the whole smoothed curve with a new weight."""
        self.smoothing = a = smoothing
        ema = weight = 0.0
        out = np.empty(self.raw.n)
        for i, y in enumerate(self.raw.y[: self.raw.n]):
            ema = a * ema + (1 - a) * y
            weight = a * weight + (1 - a)
            out[i] = ema / weight
        self.smooth.y[: self.raw.n] = out
        self._ema, self._ema_weight = ema, weight

    def xy(self, series: Series, by_time: bool) -> tuple[np.ndarray, np.ndarray]:
        """A series against steps, or against seconds of training, in the shown unit."""
        x, y = series.view()
        if by_time:
            times = {id(self.val): self.val_times, id(self.original): self.original_times}.get(id(series), self.times)
            x = times.y[: times.n]
        return x, y * self.scale

    def readout(self, x: float, by_time: bool) -> str:
        """The values at the point nearest x (a step, or seconds), in the shown unit."""
        steps, losses = self.raw.view()
        xs = self.xy(self.raw, by_time)[0]
        i = int(np.clip(np.searchsorted(xs, x), 0, self.raw.n - 1))
        if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
            i -= 1
        k = self.scale
        text = f"step {int(steps[i]):,}: loss {losses[i] * k:.4f}, smoothed {self.smooth.y[i] * k:.4f}"
        for series, words in ((self.val, "validation"), (self.original, "original text")):
            if series.n:
                vx, vy = series.view()
                j = int(np.argmin(np.abs(vx - steps[i])))
                text += f"; {words} {vy[j] * k:.4f} at step {int(vx[j]):,}"
        return text

    def seconds_at(self, step: int) -> float:
        i = int(np.clip(np.searchsorted(self.raw.x[: self.raw.n], step), 0, self.raw.n - 1))
        return float(self.times.y[i])

    def write_csv(self, path: str) -> None:
        """Every step's loss and smoothed loss, with the validation loss on evaluated steps (and
        a fine-tune's loss on the original text, with the evaluation before its first step)."""
        steps, losses = self.raw.view()
        at_step = dict(zip(*(a.tolist() for a in self.val.view())))
        original = dict(zip(*(a.tolist() for a in self.original.view())))
        rows = [(int(s), f"{loss:.6g}", f"{smooth:.6g}") for s, loss, smooth in
                zip(steps.tolist(), losses.tolist(), self.smooth.y[: self.raw.n].tolist())]
        if original and 0 not in {r[0] for r in rows}:
            rows.insert(0, (0, "", ""))  # the base, scored before the first step
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "loss", "smoothed_loss", "val_loss"] + (["original_val_loss"] if original else []))
            for step, loss, smooth in rows:
                v, o = at_step.get(step), original.get(step)
                writer.writerow([step, loss, smooth, "" if v is None else f"{v:.6g}"]
                                + (["" if o is None else f"{o:.6g}"] if original else []))
