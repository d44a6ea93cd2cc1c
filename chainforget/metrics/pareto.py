"""Cross-run summaries the figures and findings draw: Pareto fronts, the share of a stage's gain that was lost, and
rank correlations. Pure functions of numbers; ``report/`` draws and formats them."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (both maximised), sorted by x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def gain_share(forgetting: float | None, gain: float | None) -> float | None:
    """The share of what a task's training gained that was lost (forgetting / gain); None without a positive gain."""
    if forgetting is None or gain is None or gain <= 0:
        return None
    return forgetting / gain


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 points or a constant variable."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for value in np.unique(v):
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])
