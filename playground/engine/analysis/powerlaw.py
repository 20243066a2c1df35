"""Reading a scaling ladder's numbers: the power law L(N) = E + A·N^-α fitted through its
validation losses (numpy only), and the verdict on one run's validation curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from playground.engine.errors import ConfigError

MIN_R2 = 0.9                 # below this the curve explains too little of the losses' spread
SANE_ALPHA = (0.01, 2.0)     # the papers report 0.05-0.35; tiny models may run higher
E_GRID = 400                 # candidate floors E in [0, min L), then refined around the best
VERDICT_TOLERANCE = 0.01     # 1% of the loss: smaller moves are noise, not a trend


@dataclass(frozen=True)
class Fit:
    """L(N) = E + A·N^-alpha fitted by least squares in L; `ok` is False with a warning in words
    when the numbers should not be trusted (too few points, a poor fit, an odd exponent)."""
    E: float                 # the loss no size removes (the text's own entropy, and the setup's)
    A: float
    alpha: float             # how fast the loss falls with size
    r2: float                # 1 - (squared error) / (spread of the losses around their mean)
    points: int
    ok: bool
    warning: str             # "" when ok
    next_params: Optional[int]        # the next size up: largest N times the ladder's ratio
    predicted_loss: Optional[float]   # the fit's loss at next_params

    def loss(self, n) -> float:
        return float(self.E + self.A * float(n) ** -self.alpha)


def fit_power_law(params: Sequence[float], losses: Sequence[float]) -> Fit:
    """Least squares of L = E + A·N^-α over E >= 0, A > 0, α > 0.

    For each E on a grid in [0, min L), log(L - E) = log A - α·log N is a straight line,
    solved exactly; the E whose curve has the least squared error in L wins, the grid is refined
    around it, and a few damped Gauss-Newton steps on (E, log A, α) finish the least squares in
    L itself. When the losses do not fall with size at all, no curve of this family fits: the
    result is flat (E = their mean, A = 0, α = 0) and not ok.
    """
    n = np.asarray(params, dtype=float)
    y = np.asarray(losses, dtype=float)
    if n.shape != y.shape or n.ndim != 1:
        raise ConfigError("a power-law fit needs one loss per parameter count")
    if len(n) < 3:
        raise ConfigError(f"a power-law fit needs at least three runs (it has {len(n)}): "
                          "three numbers (E, A, alpha) cannot be fitted from fewer points")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(y)) and np.all(n > 0) and np.all(y > 0)):
        raise ConfigError("a power-law fit needs positive, finite parameter counts and losses")
    x = np.log(n)
    best = _grid_search(x, y, np.linspace(0.0, y.min(), E_GRID, endpoint=False))
    if best is not None:
        step = y.min() / E_GRID
        fine = np.linspace(max(best[0] - step, 0.0), min(best[0] + step, y.min() * (1 - 1e-9)), 201)
        best = _refine(x, y, _grid_search(x, y, fine) or best)
    if best is None:
        E, A, alpha = float(y.mean()), 0.0, 0.0
    else:
        E, A, alpha = (float(v) for v in best)
    predicted = E + A * np.exp(-alpha * x)
    spread = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - predicted) ** 2)) / spread if spread > 0 else 0.0
    next_params = int(round(n.max() * _ladder_ratio(n)))
    warning = _warning(n, y, alpha, r2, best is None)
    return Fit(E, A, alpha, r2, len(n), not warning, warning, next_params,
               E + A * next_params ** -alpha)


def _line(x: np.ndarray, y: np.ndarray, E: float) -> Optional[tuple[float, float, float]]:
    """(E, A, alpha) with log(y - E) a least-squares line in x = log N; None when it rises."""
    slope, intercept = np.polyfit(x, np.log(y - E), 1)
    return None if slope >= 0 else (E, math.exp(intercept), -slope)


def _sse(x, y, fit) -> float:
    E, A, alpha = fit
    return float(np.sum((E + A * np.exp(-alpha * x) - y) ** 2))


def _grid_search(x, y, grid) -> Optional[tuple[float, float, float]]:
    fits = [f for f in (_line(x, y, E) for E in grid) if f is not None]
    return min(fits, key=lambda f: _sse(x, y, f)) if fits else None


def _refine(x, y, fit, iterations: int = 50):
    """Damped Gauss-Newton (Levenberg-Marquardt) on (E, log A, alpha), keeping E >= 0 and
    alpha > 0; a step is taken only when it lowers the squared error."""
    theta = np.array([fit[0], math.log(fit[1]), fit[2]])
    err, damping = _sse(x, y, fit), 1e-3
    for _ in range(iterations):
        E, logA, alpha = theta
        power = np.exp(logA - alpha * x)
        residual = E + power - y
        J = np.stack([np.ones_like(x), power, -power * x], axis=1)
        H = J.T @ J
        try:
            delta = np.linalg.solve(H + damping * np.diag(np.diag(H) + 1e-12), -J.T @ residual)
        except np.linalg.LinAlgError:
            break
        trial = theta + delta
        trial_fit = (trial[0], math.exp(min(trial[1], 700.0)), trial[2])
        if trial[0] >= 0 and trial[2] > 0 and _sse(x, y, trial_fit) < err:
            theta, err, damping = trial, _sse(x, y, trial_fit), damping / 3
        else:
            damping *= 10
        if damping > 1e8:
            break
    return theta[0], math.exp(theta[1]), theta[2]


def _ladder_ratio(n: np.ndarray) -> float:
    """The ladder's mean step up in size (geometric); 2 when every size is the same."""
    logs = np.sort(np.log(n))
    step = (logs[-1] - logs[0]) / (len(logs) - 1)
    return math.exp(step) if step > 0 else 2.0


def _warning(n, y, alpha: float, r2: float, flat: bool) -> str:
    """Why the fit is not evidence, in words; '' when nothing is wrong."""
    notes = []
    order = np.argsort(n, kind="stable")
    rises = [i + 1 for i in range(len(n) - 1) if y[order[i + 1]] >= y[order[i]]]
    if flat:
        notes.append("the loss does not fall with size: no power law fits these runs")
    elif rises:
        notes.append(f"the loss did not fall at every step up in size ({len(rises)} of "
                     f"{len(n) - 1} steps up did not help): the runs may be data- or "
                     "training-limited rather than size-limited")
    if len(n) == 3:
        notes.append("only three runs: a curve with three numbers passes through almost any "
                     "three points, so this fit is not evidence yet; add sizes")
    if not flat and r2 < MIN_R2:
        notes.append(f"poor fit (R² = {r2:.2f}, below {MIN_R2}): the runs do not follow one "
                     "power law")
    if not flat and not SANE_ALPHA[0] <= alpha <= SANE_ALPHA[1]:
        notes.append(f"alpha = {alpha:.3g} is outside {SANE_ALPHA[0]}-{SANE_ALPHA[1]}, far from "
                     "what scaling studies find")
    return "; ".join(notes)


def verdict(curve: Sequence[tuple[int, Optional[float]]],
            tolerance: float = VERDICT_TOLERANCE) -> str:
    """Read a run's validation curve ((step, val_loss), ...) in one word.

    "overfit": the validation loss turned up: its lowest point came before the last
    evaluation, and the last is higher than that lowest by more than `tolerance` of it (the
    model memorises the training text: data-limited).
    "undertrained": still falling at the end: the last evaluation is the lowest, and it is
    lower than the evaluation a quarter of the curve earlier (at least one back) by more than
    `tolerance` of it (more tokens would still help).
    "ok": neither: the curve has flattened. "n/a": fewer than three validation losses.
    """
    losses = [v for _, v in curve if v is not None and math.isfinite(v)]
    if len(losses) < 3:
        return "n/a"
    lowest, last = min(losses), losses[-1]
    if losses.index(lowest) < len(losses) - 1 and last > lowest * (1 + tolerance):
        return "overfit"
    back = losses[-1 - max(1, len(losses) // 4)]
    if last <= lowest and back - last > tolerance * back:
        return "undertrained"
    return "ok"
