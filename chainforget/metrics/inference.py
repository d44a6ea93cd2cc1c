"""The one inference engine: every interval, p-value and minimum detectable effect the reports print.

``leaderboard``, ``compare``, ``findings`` and ``plot`` call these functions and only format what they return, so the
same runs and the same metric give the same :class:`Estimate` in every table.

- **A cell** (one metric of one task, over the seeds of one setting): :func:`cell` of the runs' stored entries. One
  seed: the run's own interval as stored (its metric's cluster bootstrap; conditional on one trained model). Several
  seeds: their mean (between-seed variance with t(S-1), the runs' evaluation SE whole: the seeds share the examples).
- **A difference between two methods** (:func:`difference`): the per-example values of both methods, paired by seed
  and example. The covariance of the per-seed mean differences is the cluster-robust (sandwich) covariance that a
  joint bootstrap estimates (templates resampled within groups, *once* for all seeds and both methods: the seeds
  score the same examples), in closed form. Only the **excess** between-seed variance, beyond what that evaluation
  covariance explains, is added as training randomness. Quantiles: t(clusters - groups) for the evaluation part,
  t(S - 1) for the excess.
- **A difference of ratios** (:func:`ratio_difference`, order asymmetry): each ratio (forgetting / gain) gets a
  Fieller interval from the same covariances, which follows the ratio's skew and is unbounded when the gain is not
  clearly positive; the difference of two independent ratios combines them by MOVER (Zou & Donner 2008). Nothing is
  dropped: an unbounded side is reported as such (``unbounded``).

Interval and test are one statistic: ``p`` is ``1 - c`` for the confidence ``c`` whose interval just reaches 0, so
an interval excludes 0 exactly when ``p < 0.05``. Every interval is clipped to the declared range it is given.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from chainforget.metrics import effects
from chainforget.metrics.distributions import normal_ppf, t_ppf
from chainforget.metrics.replicates import clip, se_from_interval

CONFIDENCE = effects.CONFIDENCE
POWER = effects.POWER
Bounds = tuple[float | None, float | None]


@dataclass(frozen=True)
class Estimate:
    """One printed number: value, 95% interval (``None`` = open there), p, MDE and what it rests on.

    ``unbounded`` names the open side(s) ("low", "high", "both") of an interval that is honestly infinite (a ratio
    whose denominator is not clearly positive); ``missing`` says why there is no value.
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    p: float | None = None
    mde: float | None = None
    se: float | None = None
    n: int | None = None
    seeds: int = 0
    unit: str | None = None
    missing: str | None = None
    unbounded: str | None = None

    def triple(self) -> tuple[float, float | None, float | None] | None:
        """(value, ci_low, ci_high), or None when missing: what a table cell shows."""
        return None if self.value is None else (self.value, self.ci_low, self.ci_high)

    def summary(self) -> dict:
        return asdict(self)


def missing_estimate(reason: str, seeds: int = 0, unit: str | None = None) -> Estimate:
    return Estimate(None, seeds=seeds, unit=unit, missing=reason)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _from_effect(effect: effects.Effect, bounds: Bounds, n: int | None, unit: str | None) -> Estimate:
    low, high = effect.interval(bounds=bounds)
    return Estimate(effect.value, low, high, effect.pvalue(), effect.mde(), effect.se, n, effect.n_seeds, unit)


# -- cells: stored entries ---------------------------------------------------------------------------------------
def cell(entries: Sequence[tuple[Any, Any, Any]], bounds: Bounds = (None, None), *, unit: str | None = None,
         n: int | None = None, missing: str | None = None) -> Estimate:
    """One table cell from its runs' stored ``(value, ci_low, ci_high)`` entries, one per seed.

    One defined entry: as stored (clipped to ``bounds``), with the p and MDE of the normal SE its interval implies.
    Several: their mean with ``effects.from_seeds`` (between-seed variance with t(S - 1), the runs' mean evaluation
    SE whole: the seeds share the examples). None defined: missing.
    """
    entries = list(entries)
    clean = [(_num(v), _num(lo), _num(hi)) for v, lo, hi in entries]
    clean = [e for e in clean if e[0] is not None]
    if not clean:
        return missing_estimate(missing or "no run of this cell has a value", len(entries), unit)
    # an entry with no interval at all (a final score) adds nothing to the evaluation part; a half-open one
    # (a ratio whose gain is not clearly positive) leaves the whole cell open
    ses = [0.0 if lo is None and hi is None else se_from_interval(lo, hi) for _, lo, hi in clean]
    effect = effects.from_seeds([e[0] for e in clean], ses)
    if len(clean) == 1:
        value, low, high = clean[0]
        low, high = clip(low, high, bounds)
        p, mde = (None, None) if low is None and high is None else (effect.pvalue(), effect.mde())
        return Estimate(value, low, high, p, mde, effect.se if p is not None else None, n, 1, unit)
    return _from_effect(effect, bounds, n, unit)


# -- the evaluation covariance of clustered means -------------------------------------------------------------
def codes(groups: Sequence[str], clusters: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(group code, cluster code) per example: integer labels, a cluster never straddling two groups."""
    _, gcode = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
    if clusters is None:
        return gcode, np.arange(gcode.size)
    pairs = np.array([f"{g}\x1f{c}" for g, c in zip(gcode.tolist(), clusters)], dtype=object)
    return gcode, np.unique(pairs, return_inverse=True)[1]


def cluster_covariance(values: np.ndarray, gcode: np.ndarray, ccode: np.ndarray) -> tuple[np.ndarray, int]:
    """(covariance ``[..., K, K]`` of the column means of ``values`` ``[..., n, K]``, degrees of freedom).

    The mean is stratified by group (each group's share fixed, as the metrics' bootstrap resamples within groups)
    and the sampled unit is the cluster (template): ``sum_g C_g / (C_g - 1) * sum_c r_c r_c^T / n^2``, ``r_c`` = the
    cluster's totals minus its size times its group's mean. This is the covariance a joint cluster bootstrap
    estimates (without its ``(C - 1) / C`` shrinkage), in closed form. A group with one cluster adds nothing (a
    bootstrap would not vary it either). Degrees of freedom: sum over groups of ``C_g - 1`` (at least 1). Leading
    axes are independent data sets (simulations).
    """
    values = np.asarray(values, dtype=float)
    lead, (n, k) = values.shape[:-2], values.shape[-2:]
    flat = values.reshape(-1, n, k)
    b = flat.shape[0]
    n_c, n_g = int(ccode.max()) + 1, int(gcode.max()) + 1
    group_of = np.zeros(n_c, dtype=np.int64)
    group_of[ccode] = gcode
    sizes = np.bincount(ccode, minlength=n_c).astype(float)
    per_group = np.bincount(group_of, minlength=n_g).astype(float)  # clusters per group
    g_sizes = np.bincount(group_of, weights=sizes, minlength=n_g)
    index = (np.arange(b * k)[:, None] * n_c + ccode[None, :]).ravel()
    totals = np.bincount(index, weights=flat.transpose(0, 2, 1).ravel(), minlength=b * k * n_c)
    totals = totals.reshape(b, k, n_c).transpose(0, 2, 1)  # [B, C, K]
    g_totals = np.einsum("cg,bck->bgk", np.eye(n_g)[group_of], totals)
    resid = totals - sizes[None, :, None] * (g_totals / np.maximum(g_sizes, 1.0)[None, :, None])[:, group_of, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(per_group >= 2, per_group / (per_group - 1), 0.0)[group_of]
    cov = np.einsum("bck,bcl,c->bkl", resid, resid, weight) / n ** 2
    df = int(np.sum(np.maximum(per_group - 1, 0)))
    return cov.reshape(*lead, k, k), max(df, 1)


def eval_covariance(columns: np.ndarray, groups: Sequence[str], clusters: Sequence[str] | None = None
                    ) -> tuple[np.ndarray, int]:
    """:func:`cluster_covariance` of one data set's columns ``[n, K]`` (values scored on the same examples: seeds,
    methods, forgetting and gain) from group and cluster labels."""
    cols = np.asarray(columns, dtype=float)
    cols = cols[:, None] if cols.ndim == 1 else cols
    return cluster_covariance(cols, *codes(groups, clusters))


def seed_parts(d: np.ndarray, gcode: np.ndarray, ccode: np.ndarray
               ) -> tuple[np.ndarray, tuple[tuple[np.ndarray, int], ...]]:
    """(mean over seeds and examples, variance parts ``((var, df), ...)``) of per-example values ``d`` ``[..., S, n]``
    (the same examples for every seed; leading axes = independent data sets).

    The variance of the mean is the joint evaluation variance ``1' cov 1 / S^2`` (:func:`cluster_covariance` of the
    S seeds) plus the excess between-seed variance ``(s^2 - E) / S``, where ``s^2`` is the between-seed variance of
    the per-seed means and ``E = (tr cov - 1' cov 1 / S) / (S - 1)`` the part of it evaluation noise explains. It
    is split by what each piece is estimated from: the evaluation noise the seeds share, ``1' cov 1 / S^2 - E / S``
    (from the clusters: t(df)), and ``s^2 / S`` (from S values: t(S - 1)). The two add up to the same variance;
    the quantiles keep 95% coverage with 2, 3 and 5 seeds whether seeds agree or not (``simulate_inference``).
    """
    d = np.asarray(d, dtype=float)
    s = d.shape[-2]
    cov, df = cluster_covariance(np.swapaxes(d, -1, -2), gcode, ccode)
    total = cov.sum(axis=(-1, -2))
    per_seed = d.mean(axis=-1)
    if s == 1:
        return per_seed[..., 0], ((np.maximum(total, 0.0), df),)
    explained = (np.trace(cov, axis1=-2, axis2=-1) - total / s) / (s - 1)
    shared = np.maximum(total / s ** 2 - explained / s, 0.0)
    return per_seed.mean(axis=-1), ((shared, df), (per_seed.var(axis=-1, ddof=1) / s, s - 1))


def half_width(parts, confidence: float = CONFIDENCE):
    """``sqrt(sum_k q_k^2 var_k)``, ``q_k`` the ``df_k`` quantile (normal for df 0), elementwise."""
    level = 0.5 + confidence / 2.0
    return np.sqrt(sum(_quantile(level, df) ** 2 * v for v, df in parts))


def difference(x: np.ndarray, y: np.ndarray | None, groups: Sequence[str], clusters: Sequence[str] | None = None,
               bounds: Bounds = (None, None), unit: str | None = None) -> Estimate:
    """The mean over seeds and examples of ``x - y`` (``y`` None: of ``x``), ``[S, n]`` each, paired by seed (row)
    and example (column): evaluation covariance over seeds jointly, plus the excess between-seed variance."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    d = x if y is None else x - np.atleast_2d(np.asarray(y, dtype=float))
    if d.size == 0:
        return missing_estimate("no common evaluation examples", d.shape[0], unit)
    value, parts = seed_parts(d, *codes(groups, clusters))
    effect = effects.Effect(float(value), tuple((float(v), df) for v, df in parts), int(d.shape[0]))
    return _from_effect(effect, bounds, int(d.shape[1]), unit)


# -- ratios: Fieller per ratio, MOVER for a difference of two ----------------------------------------------------
def ratio_parts(forget: np.ndarray, gain: np.ndarray, gcode: np.ndarray, ccode: np.ndarray):
    """(mean forgetting, mean gain, variance parts ``((cov [..., 2, 2], df), ...)``) of per-example values
    ``[..., S, n]`` (same examples for every seed): as :func:`seed_parts`, for the pair (forgetting, gain): the
    evaluation covariance the seeds share (negative eigenvalues floored at 0), t(df), and the between-seed
    covariance of the per-seed means / S, t(S - 1)."""
    f, g = np.asarray(forget, dtype=float), np.asarray(gain, dtype=float)
    s = f.shape[-2]
    cov, df = cluster_covariance(np.swapaxes(np.concatenate([f, g], axis=-2), -1, -2), gcode, ccode)
    blocks = cov.reshape(*cov.shape[:-2], 2, s, 2, s)
    evaluation = blocks.sum(axis=(-1, -3)) / s ** 2  # [..., 2, 2]
    if s == 1:
        return f.mean(axis=(-1, -2)), g.mean(axis=(-1, -2)), ((evaluation, df),)
    explained = (np.einsum("...isjs->...ij", blocks) - blocks.sum(axis=(-1, -3)) / s) / (s - 1)
    w, vec = np.linalg.eigh(evaluation - explained / s)
    shared = np.einsum("...ik,...k,...jk->...ij", vec, np.maximum(w, 0.0), vec)
    means = np.stack([f.mean(axis=-1), g.mean(axis=-1)], axis=-1)  # [..., S, 2]
    centred = means - means.mean(axis=-2, keepdims=True)
    between = np.einsum("...si,...sj->...ij", centred, centred) / (s - 1)
    return f.mean(axis=(-1, -2)), g.mean(axis=(-1, -2)), ((shared, df), (between / s, s - 1))


def fieller(f, g, parts, confidence: float = CONFIDENCE):
    """Fieller's interval of ``f / g``: every R with ``(f - R g)^2 <= sum_k q_k^2 (V_ff - 2 R V_fg + R^2 V_gg)``.
    (-inf, inf) where the gain is not clearly positive at this confidence (no finite set is then a valid interval).
    Elementwise over leading axes."""
    level = 0.5 + confidence / 2.0
    v = sum(_quantile(level, df) ** 2 * cov for cov, df in parts)
    f, g = np.asarray(f, dtype=float), np.asarray(g, dtype=float)
    a = g ** 2 - v[..., 1, 1]
    b = f * g - v[..., 0, 1]
    c = f ** 2 - v[..., 0, 0]
    bounded = (a > 0) & (g > 0)
    safe_a = np.where(bounded, a, 1.0)
    root = np.sqrt(np.maximum(b * b - a * c, 0.0))
    return np.where(bounded, (b - root) / safe_a, -np.inf), np.where(bounded, (b + root) / safe_a, np.inf)


def mover(first: tuple, second: tuple, confidence: float = CONFIDENCE):
    """The interval of ``r1 - r2`` for two independent ratios ``(f, g, parts)`` from their Fieller intervals
    (MOVER, Zou & Donner 2008): ``d -+ sqrt((r1 - l1)^2 + (u2 - r2)^2)``, resp. ``(u1 - r1)^2 + (r2 - l2)^2``;
    infinite where either interval is. Elementwise."""
    r1, r2 = np.asarray(first[0]) / np.asarray(first[1]), np.asarray(second[0]) / np.asarray(second[1])
    l1, u1 = fieller(*first, confidence)
    l2, u2 = fieller(*second, confidence)
    d = r1 - r2
    with np.errstate(invalid="ignore"):
        return d - np.hypot(r1 - l1, u2 - r2), d + np.hypot(u1 - r1, r2 - l2)


def mover_pvalue(first: tuple, second: tuple, iterations: int = 40):
    """``1 - c`` for the confidence ``c`` whose MOVER interval just reaches 0 (bisection, elementwise), so the 95%
    interval excludes 0 exactly when ``p < 0.05``."""
    d = np.asarray(first[0]) / np.asarray(first[1]) - np.asarray(second[0]) / np.asarray(second[1])
    low, high = np.zeros(np.shape(d)), np.full(np.shape(d), 1.0 - 1e-9)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        lo, hi = mover(first, second, mid)
        excludes = (lo > 0) | (hi < 0)
        low, high = np.where(excludes, mid, low), np.where(excludes, high, mid)
    return np.where(d == 0, 1.0, 1.0 - 0.5 * (low + high))


@dataclass(frozen=True)
class Ratio:
    """A seed-averaged ratio ``f / g`` (forgetting / gain) with its variance parts (:func:`ratio_parts`)."""

    f: float
    g: float
    parts: tuple
    seeds: int

    @property
    def value(self) -> float | None:
        return self.f / self.g if self.g > 0 else None

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        low, high = fieller(self.f, self.g, self.parts, confidence)
        return float(low), float(high)

    def delta_parts(self) -> tuple[tuple[float, int], ...]:
        """Variance parts of the ratio by the delta method (for its minimum detectable effect only)."""
        r = self.value
        return tuple((float(c[0, 0] - 2 * r * c[0, 1] + r * r * c[1, 1]) / self.g ** 2, df) for c, df in self.parts)

    def spec(self) -> tuple:
        return self.f, self.g, self.parts


def _quantile(level, df: int):
    level = np.asarray(level, dtype=float)
    if level.ndim == 0:
        return normal_ppf(float(level)) if df <= 0 else t_ppf(float(level), df)
    return np.vectorize(lambda x: normal_ppf(x) if df <= 0 else t_ppf(x, df))(level)


def ratio(forget: np.ndarray, gain: np.ndarray, groups: Sequence[str], clusters: Sequence[str] | None = None
          ) -> Ratio:
    """The seed-averaged ratio ``mean(forget) / mean(gain)`` of per-example values ``[S, n]`` (same examples for
    every seed), with the joint evaluation covariance of (forgetting, gain) and the excess between-seed one."""
    f, g = np.atleast_2d(forget), np.atleast_2d(gain)
    mf, mg, parts = ratio_parts(f, g, *codes(groups, clusters))
    return Ratio(float(mf), float(mg), parts, int(f.shape[0]))


def ratio_difference(first: Ratio, second: Ratio, bounds: Bounds = (None, None), unit: str | None = None
                     ) -> Estimate:
    """``first - second`` of two independent ratios (different runs and examples): MOVER on their Fieller
    intervals; ``p`` = 1 - the confidence whose interval reaches 0; the MDE from the delta-method variances (none
    when the interval is unbounded: no effect size is then ruled out)."""
    seeds = min(first.seeds, second.seeds)
    for side, name in ((first, "first"), (second, "second")):
        if side.value is None:
            return missing_estimate(f"the {name} ratio has no positive denominator (gain)", seeds, unit)
    value = first.value - second.value
    low, high = (float(x) for x in mover(first.spec(), second.spec()))
    open_sides = [s for s, x in (("low", low), ("high", high)) if not math.isfinite(x)]
    unbounded = None if not open_sides else ("both" if len(open_sides) == 2 else open_sides[0])
    p = float(mover_pvalue(first.spec(), second.spec()))
    delta = effects.Effect(value, first.delta_parts() + second.delta_parts(), seeds)
    low_c, high_c = clip(low if math.isfinite(low) else None, high if math.isfinite(high) else None, bounds)
    mde = None if unbounded else delta.mde()  # an unbounded interval rules no effect size out
    return Estimate(value, low_c, high_c, p, mde, delta.se, None, seeds, unit, None, unbounded)


# -- alignment and seeding ------------------------------------------------------------------------------------------
def align(vectors: Sequence[tuple[Sequence[str], np.ndarray, Sequence[str], Sequence[str] | None]]
          ) -> tuple[np.ndarray, list[str], list[str] | None] | None:
    """Per-example vectors ``(ids, values, groups, clusters)`` of several runs on their common examples:
    ``([K, n] values, groups, clusters)`` in the first vector's order; None without a common example."""
    common = set.intersection(*(set(v[0]) for v in vectors)) if vectors else set()
    if not common:
        return None
    first = vectors[0]
    order = [j for j, i in enumerate(first[0]) if i in common]
    ids = [first[0][j] for j in order]
    stacked = []
    for v in vectors:
        where = {i: j for j, i in enumerate(v[0])}
        stacked.append(np.asarray(v[1], dtype=float)[[where[i] for i in ids]])
    groups = [first[2][j] for j in order]
    clusters = None if first[3] is None else [first[3][j] for j in order]
    return np.stack(stacked), groups, clusters


def cell_rng(seed: int, *key: Any) -> np.random.Generator:
    """A generator per computed cell, keyed by what it is computed from (e.g. the run ids): the same runs give the
    same resamples whichever command asks and whichever other cells it computes."""
    return np.random.default_rng([int(seed), zlib.crc32("\x1f".join(map(str, key)).encode())])
