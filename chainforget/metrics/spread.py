"""Does forgetting depend on the group? A noise-corrected spread, a calibrated test, and simultaneous intervals.

Why not max - min of the group means: with 20 examples per group the range of noisy means is mostly noise, and no
bootstrap repairs the interval of a non-smooth statistic (docs/metrics.md has the simulation). Instead:

- **Spread** ``tau``: the random-effects between-group standard deviation of per-group forgetting, estimated by
  Paule-Mandel (the method-of-moments tau^2 solving ``Q(tau^2) = G - 1``, floored at 0), where
  ``Q(tau^2) = sum_g (m_g - mu)^2 / (v_g + tau^2)`` and ``v_g`` is the cluster-robust variance of group g's mean.
- **Test** of "no group effect": ``Q(0)``, a Welch/James-type studentized statistic computed on cluster means
  (one unit per template; per example without templates), is recomputed under permutations of the units' group
  labels, so that ``v_g`` is re-estimated every time. Studentizing keeps the size near 5% with unequal group sizes and
  ten-fold variance differences; permuting whole templates keeps it when examples share a template.
- **Interval** for tau by test inversion: tau = 0 is kept iff the permutation test does not reject at 5% (so the
  interval excludes 0 only when p < 0.05, by construction); tau > 0 is kept iff ``Q(tau^2)`` lies between the 2.5%
  and 97.5% chi-square(G - 1) quantiles (the Q-profile interval, Viechtbauer 2007).
- **Per-group intervals** that hold simultaneously: ``m_g +- c * se_g`` with ``c`` the 95% quantile of the
  max-|t| over groups in a cluster bootstrap.

Values may come from several seeds (``values[s, j]``): group means average the seeds, and ``v_g`` adds the
between-seed variance of the group mean divided by the number of seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from chainforget.metrics.distributions import chi2_ppf

ALPHA = 0.05
FLOOR_SHARE = 0.1  # a group's variance is at least this share of the pooled per-example variance (0/0 guard)
_CHUNK = 250_000  # permutations x clusters handled at once (memory)


@dataclass(frozen=True)
class Clustered:
    """One task's per-example values collapsed to clusters (a cluster = a template, or one example)."""

    names: tuple[str, ...]  # group names, sorted; codes index this
    group: np.ndarray  # [C] group code of each cluster
    sizes: np.ndarray  # [C] examples per cluster
    totals: np.ndarray  # [S, C] sum of the cluster's values for each seed
    pooled_var: float  # per-example variance of the seed-averaged values around their group means

    @property
    def singletons(self) -> bool:
        return bool(np.all(self.sizes == 1))

    @property
    def n_groups(self) -> int:
        return len(self.names)

    @property
    def n_seeds(self) -> int:
        return self.totals.shape[0]


def collapse(values: np.ndarray, groups: Sequence[str], clusters: Sequence[str] | None = None) -> Clustered:
    """Group the examples' values (``[n]`` or ``[S, n]``) into clusters nested in groups.

    A cluster label shared by two groups is split by group (clusters never straddle groups).
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))
    groups = np.asarray(groups, dtype=object)
    names = tuple(sorted(set(groups.tolist())))
    gcode = np.searchsorted(np.array(names, dtype=object), groups)
    keys = np.arange(groups.size) if clusters is None else np.asarray(clusters, dtype=object)
    pairs = [f"{g}\x1f{k}" for g, k in zip(gcode.tolist(), keys.tolist())]
    uniq, ccode = np.unique(np.array(pairs, dtype=object), return_inverse=True)
    n_c = len(uniq)
    sizes = np.bincount(ccode, minlength=n_c).astype(float)
    totals = np.stack([np.bincount(ccode, weights=row, minlength=n_c) for row in values])
    group = np.zeros(n_c, dtype=np.int64)
    group[ccode] = gcode
    avg = values.mean(axis=0)
    counts = np.bincount(gcode, minlength=len(names)).astype(float)
    gmean = np.bincount(gcode, weights=avg, minlength=len(names)) / np.maximum(counts, 1)
    pooled = float(np.mean((avg - gmean[gcode]) ** 2)) if avg.size else 0.0
    return Clustered(names, group, sizes, totals, pooled)


def group_moments(cl: Clustered, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group means ``m``, variances of the means ``v`` and sizes ``n`` for cluster labels ``[..., C]``."""
    labels = cl.group if labels is None else labels
    lead, n_c, k = labels.shape[:-1], labels.shape[-1], cl.n_groups
    b = int(np.prod(lead)) if lead else 1
    flat = (np.arange(b)[:, None] * k + labels.reshape(b, n_c)).ravel()

    def total(weights: np.ndarray) -> np.ndarray:
        w = np.broadcast_to(weights, (b, n_c)).ravel()
        return np.bincount(flat, weights=w, minlength=b * k).reshape(b, k)

    m_c, a_c = cl.sizes, cl.totals.mean(axis=0)
    count = total(np.ones(n_c))
    sum_a = total(a_c)
    if cl.singletons:  # one example per cluster: three sums suffice (the common, fast case)
        n, sum_ma, sum_mm = count, sum_a, count
    else:
        n, sum_ma, sum_mm = total(m_c), total(m_c * a_c), total(m_c * m_c)
    safe_n = np.maximum(n, 1e-300)
    mean = sum_a / safe_n
    ss = total(a_c * a_c) - 2 * mean * sum_ma + mean ** 2 * sum_mm
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(count >= 2, count / (count - 1) * np.maximum(ss, 0.0) / safe_n ** 2,
                       cl.pooled_var * m_c.max() / safe_n)
    if cl.n_seeds >= 2:
        per_seed = np.stack([total(row) / safe_n for row in cl.totals])
        var = var + per_seed.var(axis=0, ddof=1) / cl.n_seeds
    var = np.maximum(var, np.maximum(FLOOR_SHARE * cl.pooled_var / safe_n, 1e-12))
    shape = (*lead, k)
    return mean.reshape(shape), var.reshape(shape), n.reshape(shape)


def q_statistic(means: np.ndarray, variances: np.ndarray, tau2: np.ndarray | float = 0.0) -> np.ndarray:
    """``Q(tau^2) = sum_g w_g (m_g - mu_w)^2`` with ``w_g = 1 / (v_g + tau^2)`` (last axis = groups)."""
    w = 1.0 / (variances + np.asarray(tau2)[..., None])
    mu = (w * means).sum(-1) / w.sum(-1)
    return (w * (means - mu[..., None]) ** 2).sum(-1)


def solve_tau2(means: np.ndarray, variances: np.ndarray, target: float, iterations: int = 60) -> np.ndarray:
    """The tau^2 >= 0 with ``Q(tau^2) = target`` (Q decreases in tau^2); 0 where ``Q(0) <= target``."""
    ss = ((means - means.mean(-1, keepdims=True)) ** 2).sum(-1)
    low = np.zeros(ss.shape)
    high = ss / target + 1e-12  # Q(tau^2) <= ss / tau^2, so Q(high) <= target
    above = q_statistic(means, variances, low) > target
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        bigger = q_statistic(means, variances, mid) > target
        low, high = np.where(bigger, mid, low), np.where(bigger, high, mid)
    return np.where(above, 0.5 * (low + high), 0.0)


def cluster_units(cl: Clustered) -> Clustered:
    """The test's units: one value per cluster (its mean), so that clusters of unequal sizes are exchangeable."""
    if cl.singletons:
        return cl
    means = cl.totals / cl.sizes
    avg = means.mean(axis=0)
    counts = np.bincount(cl.group, minlength=cl.n_groups).astype(float)
    gmean = np.bincount(cl.group, weights=avg, minlength=cl.n_groups) / np.maximum(counts, 1)
    return Clustered(cl.names, cl.group, np.ones_like(cl.sizes), means, float(np.mean((avg - gmean[cl.group]) ** 2)))


def permutation_pvalue(cl: Clustered, n_perm: int, rng: np.random.Generator,
                       permutations: np.ndarray | None = None) -> tuple[float, float]:
    """p of "no group effect": the studentized ``Q(0)`` of the cluster means, recomputed under permutations of the
    clusters' group labels (``permutations``: precomputed label arrays ``[n_perm, C]``, else drawn from ``rng``).

    ``p = (1 + #{Q_perm >= Q_obs}) / (1 + n_perm)``, never 0.
    """
    units = cluster_units(cl)
    m, v, _ = group_moments(units)
    observed = float(q_statistic(m, v))
    tolerance = 1e-9 * max(1.0, abs(observed))
    exceed, chunk, done = 0, max(1, _CHUNK // max(1, units.group.size)), 0
    while done < n_perm:
        b = min(chunk, n_perm - done)
        labels = (rng.permuted(np.broadcast_to(units.group, (b, units.group.size)), axis=1) if permutations is None
                  else permutations[done:done + b])
        exceed += int(np.count_nonzero(q_statistic(*group_moments(units, labels)[:2]) >= observed - tolerance))
        done += b
    return (1.0 + exceed) / (1.0 + n_perm), observed


def spread_interval(means: np.ndarray, variances: np.ndarray, pvalue: np.ndarray | float,
                    alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tau estimate, low, high) from group means and variances (leading axes broadcast, e.g. simulations).

    The low end is 0 whenever ``pvalue >= alpha``: the interval never calls a spread non-zero that the test calls
    noise.
    """
    df = means.shape[-1] - 1
    estimate = np.sqrt(solve_tau2(means, variances, float(df)))
    low = np.sqrt(solve_tau2(means, variances, chi2_ppf(1 - alpha / 2, df)))
    high = np.sqrt(solve_tau2(means, variances, chi2_ppf(alpha / 2, df)))
    low = np.where(np.asarray(pvalue) < alpha, low, 0.0)
    return estimate, low, high


def spread(cl: Clustered, n_perm: int, rng: np.random.Generator, alpha: float = ALPHA) -> dict:
    """The headline biased-forgetting numbers of one task: tau, its interval, the calibrated p, and Q."""
    m, v, n = group_moments(cl)
    p, observed = permutation_pvalue(cl, n_perm, rng)
    estimate, low, high = spread_interval(m, v, p, alpha)
    return {"value": float(estimate), "ci_low": float(low), "ci_high": float(high), "p": p, "q": observed,
            "df": cl.n_groups - 1, "group_means": m.tolist(), "group_ses": np.sqrt(v).tolist()}


def simultaneous_intervals(cl: Clustered, n_boot: int, rng: np.random.Generator, confidence: float = 0.95
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(means, low, high, c): per-group intervals ``m_g +- c * se_g`` covering all groups at once.

    ``c`` is the ``confidence`` quantile of ``max_g |m*_g - m_g| / se*_g`` over a bootstrap that resamples each
    group's clusters with replacement (seed-averaged values), with ``se*_g`` recomputed in every resample (bootstrap-t:
    the uncertainty of a small group's standard error widens its interval).
    """
    m, v, _ = group_moments(cl)
    se = np.sqrt(v)
    avg = cl.totals.mean(axis=0)
    worst = np.zeros(n_boot)
    floor = FLOOR_SHARE * cl.pooled_var
    for g in range(cl.n_groups):
        idx = np.flatnonzero(cl.group == g)
        draw = idx[rng.integers(0, idx.size, size=(n_boot, idx.size))]
        a, size = avg[draw], cl.sizes[draw]
        n = size.sum(axis=1)
        boot = a.sum(axis=1) / n
        k = idx.size
        ss = ((a - size * boot[:, None]) ** 2).sum(axis=1)
        var = (k / (k - 1) * ss / n ** 2) if k >= 2 else np.full(n_boot, v[g])
        if cl.n_seeds >= 2:
            var = var + (v[g] - _within_variance(cl, g))  # the between-seed part is not resampled
        boot_se = np.sqrt(np.maximum(var, np.maximum(floor / n, 1e-12)))
        worst = np.maximum(worst, np.abs(boot - m[g]) / boot_se)
    c = float(np.quantile(worst, confidence))
    return m, m - c * se, m + c * se, c


def _within_variance(cl: Clustered, g: int) -> float:
    single = Clustered(cl.names, cl.group, cl.sizes, cl.totals.mean(axis=0, keepdims=True), cl.pooled_var)
    return float(group_moments(single)[1][g])
