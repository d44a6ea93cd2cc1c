"""Effects with an interval, a p-value and a minimum detectable effect: what ``chainforget findings`` states.

An :class:`Effect` is a value and its variance split into parts, each with the quantile it needs:

- the **evaluation sample** (per-run bootstrap standard errors): normal quantiles;
- **training randomness** (between-seed variance of the mean over ``S`` seeds): Student t with ``S - 1`` degrees of
  freedom, because it is estimated from only ``S`` values.

The half-width at confidence ``c`` is ``sqrt(sum_k q_k(c)^2 * var_k)``; for one cell this is exactly
``inference.cell`` over stored entries (coverage-tested in tests/metrics/test_metrics_replicates.py), and a
difference of independent cells
adds their parts. The p-value inverts the same interval (the ``1 - p`` interval just touches 0), so an interval
excludes 0 exactly when ``p < alpha``. The minimum detectable effect at power ``1 - beta`` is
``sqrt(sum_k (q_k(1 - alpha/2) + q_k(1 - beta))^2 * var_k)``: for a normal effect ``(z_0.975 + z_0.80) * SE``.

A per-run standard error comes from a bootstrap percentile interval (``se_from_interval``): robust to the long tail
of a ratio's resamples. Seeded simulations of every path are in ``simulate.py`` and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from chainforget.metrics.distributions import chi2_ppf, normal_cdf, normal_ppf, t_cdf, t_ppf
from chainforget.metrics.replicates import clip, se_from_interval

CONFIDENCE = 0.95
POWER = 0.80
NORMAL = 0  # degrees of freedom 0 = a normal part (the evaluation sample)


def _q(level: float, df: int) -> float:
    return normal_ppf(level) if df == NORMAL else t_ppf(level, df)


@dataclass(frozen=True)
class Effect:
    """A value with variance parts ``(variance, df)`` (``df = 0``: normal); ``open`` when a part is unknown."""

    value: float
    parts: tuple[tuple[float, int], ...]
    n_seeds: int = 1
    open: bool = False

    @property
    def se(self) -> float | None:
        return None if self.open else math.sqrt(sum(v for v, _ in self.parts))

    def half_width(self, confidence: float = CONFIDENCE) -> float | None:
        if self.open:
            return None
        level = 0.5 + confidence / 2.0
        return math.sqrt(sum(_q(level, df) ** 2 * v for v, df in self.parts))

    def interval(self, confidence: float = CONFIDENCE, bounds=(None, None)) -> tuple[float | None, float | None]:
        half = self.half_width(confidence)
        if half is None:
            return None, None
        return clip(self.value - half, self.value + half, bounds)

    def pvalue(self) -> float | None:
        """p of "the true value is 0": ``1 - c`` for the confidence ``c`` whose interval ends at 0."""
        if self.open:
            return None
        target = abs(self.value)
        if target == 0.0:
            return 1.0
        if all(v == 0.0 for v, _ in self.parts):
            return 0.0
        live = [(v, df) for v, df in self.parts if v > 0.0]
        if len(live) == 1:  # one source of variance: the closed form of the same inversion
            (v, df), = live
            z = target / math.sqrt(v)
            return 2.0 * (1.0 - (normal_cdf(z) if df == NORMAL else t_cdf(z, df)))
        return _invert_half_width(live, target)
    def mde(self, power: float = POWER, alpha: float = 1.0 - CONFIDENCE) -> float | None:
        """The smallest true |effect| that a two-sided level-``alpha`` test detects with probability ``power``
        (None when open, or when nothing varies: every paired difference identical gives no scale to size it by)."""
        if self.open or all(v == 0.0 for v, _ in self.parts):
            return None
        return math.sqrt(sum((_q(1 - alpha / 2, df) + _q(power, df)) ** 2 * v for v, df in self.parts))

    def minus(self, other: "Effect") -> "Effect":
        """The difference of two independent effects (different runs and evaluation examples): parts add."""
        return Effect(self.value - other.value, self.parts + other.parts, min(self.n_seeds, other.n_seeds),
                      self.open or other.open)

    def summary(self, bounds=(None, None), digits: int | None = None) -> dict:
        low, high = self.interval(bounds=bounds)
        out = {"value": self.value, "ci_low": low, "ci_high": high, "se": self.se, "p": self.pvalue(),
               "mde": self.mde(), "seeds": self.n_seeds}
        if digits is not None:
            out = {k: (round(v, digits) if isinstance(v, float) else v) for k, v in out.items()}
        return out


def _cdf(x: float, df: int) -> float:
    return normal_cdf(x) if df == NORMAL else t_cdf(x, df)


def _invert_half_width(parts: list[tuple[float, int]], target: float) -> float:
    """``1 - c`` for the confidence ``c`` whose half-width ``sqrt(sum q_k(c)^2 v_k)`` equals ``target``.

    The unknown is the quantile ``x`` of the part with the fewest degrees of freedom (its level ``cdf(x)`` is cheap;
    the other parts' quantiles follow from that level), solved by regula falsi (Illinois): a few evaluations."""
    pivot = min(parts, key=lambda p: math.inf if p[1] == NORMAL else p[1])

    def excess(x: float) -> tuple[float, float]:
        level = _cdf(x, pivot[1])
        if level >= 1.0 - 1e-15:
            return math.inf, level
        total = sum((x if (v, df) == pivot else _q(level, df)) ** 2 * v for v, df in parts)
        return math.sqrt(total) - target, level

    low, f_low = 0.0, -target
    high = 1.0
    f_high, level = excess(high)
    while f_high < 0:
        low, f_low, high = high, f_high, high * 2.0
        f_high, level = excess(high)
        if level >= 1.0 - 1e-15:
            return 1e-12
    side = 0
    for _ in range(100):
        x = high - f_high * (high - low) / (f_high - f_low) if math.isfinite(f_high) else 0.5 * (low + high)
        f, level = excess(x)
        if abs(f) <= 1e-10 * target or high - low <= 1e-12 * high:
            break
        if f < 0:
            low, f_low = x, f
            f_high = f_high / 2 if side == -1 else f_high
            side = -1
        else:
            high, f_high = x, f
            f_low = f_low / 2 if side == 1 else f_low
            side = 1
    return max(2.0 * (1.0 - level), 1e-12)


def from_seeds(values: Sequence[float], ses: Sequence[float | None]) -> Effect:
    """The mean over seeds of per-seed values with their evaluation standard errors (``None`` = unknown).

    The seeds share the evaluation examples, so the mean evaluation SE enters whole.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("from_seeds needs at least one value")
    known = [s for s in ses if s is not None and math.isfinite(s)]
    is_open = len(known) < len(ses)
    parts = [((float(np.mean(known)) ** 2) if known else 0.0, NORMAL)]
    if x.size >= 2:
        parts.append((float(x.var(ddof=1)) / x.size, int(x.size - 1)))
    return Effect(float(x.mean()), tuple(parts), int(x.size), is_open)


def from_entries(entries: Sequence[tuple[float, float | None, float | None]]) -> Effect:
    """From stored metric entries ``(value, ci_low, ci_high)`` of one cell's seeds (SE from each 95% interval)."""
    return from_seeds([e[0] for e in entries], [se_from_interval(e[1], e[2]) for e in entries])


def spread_mde(group_variances: Sequence[float], power: float = POWER, alpha: float = 1.0 - CONFIDENCE) -> float:
    """The between-group SD ``tau`` the group test detects with probability ``power``.

    With equal group variances ``v``, ``Q(0) ~ (1 + tau^2 / v) * chi2(G - 1)`` under the random-effects model, so the
    test rejects with probability ``power`` at ``tau = sqrt(v * (chi2_{1-alpha}/chi2_{1-power} - 1))`` (df ``G - 1``);
    ``v`` is taken as the mean of the groups' variances of their mean forgetting.
    """
    v = np.asarray(group_variances, dtype=float)
    df = v.size - 1
    if df < 1:
        raise ValueError("spread_mde needs at least two groups")
    return float(math.sqrt(float(v.mean()) * (chi2_ppf(1 - alpha, df) / chi2_ppf(1 - power, df) - 1.0)))
