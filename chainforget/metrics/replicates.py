"""Helpers for combining stored per-run entries: the standard error a stored interval implies, and clipping an
interval to a metric's declared range. The combination itself (seeds as replicates) is ``inference.cell``.
"""

from __future__ import annotations

from chainforget.metrics.distributions import normal_ppf

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
