"""Seeds as replicates: one interval that holds both the evaluation sample's noise and training randomness.

With S >= 2 seeds of one cell (same examples, different trained models), the mean over seeds has two sources of
variance: training randomness, estimated by the between-seed variance of the per-seed values divided by S, and the
evaluation sample, the per-seed standard error (the same examples are scored for every seed, so these errors are
correlated: their mean enters whole, not divided by S). The half-width is ``sqrt(t(S-1)^2 * a + z^2 * b)``: each
part gets the multiplier of its own uncertainty (the between-seed part is estimated from only S values; a
Satterthwaite t undercovers with 2-3 seeds when training noise dominates), then the interval is clipped to the
metric's declared range. With one seed the stored within-run interval is returned: it is conditional on that one
trained model, which every table says.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from chainforget.metrics.distributions import normal_ppf, t_ppf

CONFIDENCE = 0.95


def se_from_interval(low: float | None, high: float | None, confidence: float = CONFIDENCE) -> float | None:
    """The standard error a symmetric normal interval of that width would have (None without an interval)."""
    if low is None or high is None:
        return None
    return (high - low) / (2.0 * normal_ppf(0.5 + confidence / 2.0))


def clip(low: float | None, high: float | None, bounds: tuple[float | None, float | None]) -> tuple:
    lo_b, hi_b = bounds
    if low is not None and lo_b is not None:
        low = max(low, lo_b)
    if high is not None and hi_b is not None:
        high = min(high, hi_b)
    return low, high


def combine_seeds(values: Sequence[float], ses: Sequence[float | None], bounds=(None, None),
                  confidence: float = CONFIDENCE) -> tuple[float, float | None, float | None, float]:
    """(mean over seeds, low, high, between-seed degrees of freedom) of per-seed values with their within-run SEs.

    A seed without a standard error contributes 0 to the evaluation part (the between-seed part still counts).
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    mean = float(x.mean())
    if n < 2:
        raise ValueError("combine_seeds needs at least two seeds; with one, use the run's own interval")
    between = float(x.var(ddof=1)) / n
    known = [s for s in ses if s is not None and math.isfinite(s)]
    within = float(np.mean(known)) ** 2 if known else 0.0
    level = 0.5 + confidence / 2.0
    half = math.sqrt(t_ppf(level, n - 1) ** 2 * between + normal_ppf(level) ** 2 * within)
    low, high = clip(mean - half, mean + half, bounds)
    return mean, low, high, n - 1
