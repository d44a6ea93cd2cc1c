"""Does forgetting depend on the group? A noise-corrected spread, its test and interval from one statistic, and
simultaneous per-group intervals.

Why not max - min of the group means: with 20 examples per group the range of noisy means is mostly noise, and no
bootstrap repairs the interval of a non-smooth statistic (docs/metrics.md has the simulation). Instead, with group
means ``m_g`` (size-weighted over examples, averaged over seeds) and variances ``v_g`` of those means:

- ``v_g = vE_g + s_b^2 / S``: ``vE_g`` is the cluster-robust variance of the seed-averaged values (clusters =
  templates; it holds all the evaluation noise, which the seeds share because they score the same examples), and
  ``s_b^2`` the *excess* group x seed interaction variance (training noise): the interaction sum of squares of the
  per-seed group means minus what their seed-specific evaluation noise explains, floored at 0 (method of moments,
  ``(G - 1)(S - 1)`` degrees of freedom).
- **One statistic** ``Q(tau^2) = sum_g (m_g - mu)^2 / (v_g + tau^2)`` with a simulated reference at every tau:
  B replicates whose evaluation noise is a wild cluster bootstrap of the templates' residual totals (``vE``
  re-estimated in each) and, with seeds, whose training noise is a simulated group x seed interaction (its
  variance drawn from what the interaction sum of squares allows, then ``s_b^2`` re-estimated as above: its few
  degrees of freedom and its floor at 0 are in the reference, a Knapp-Hartung-type step); at tau > 0 they add
  random group effects ``tau * z``.
- **Spread** ``tau``: Paule-Mandel, the ``tau^2 >= 0`` with ``Q(tau^2) = G - 1``.
- **Test** of tau = 0: ``p = (1 + #{Q*_k >= Q(0)}) / (1 + B)``, residuals around the common mean (the null imposed).
- **Interval**: tau = 0 is in it iff ``p >= alpha``; tau > 0 iff ``Q(tau^2)`` is neither in the top nor the bottom
  ``alpha/2`` of its reference at tau (residuals around each group's mean). So it excludes 0 exactly when
  ``p < alpha``; when the low end is 0 but ``p < alpha`` the set is ``(0, high]`` (``zero_excluded``).
- **Per-group intervals** that hold simultaneously: ``m_g +- c * se_g`` with ``c`` the 95% quantile of the
  max-|t| over groups in a cluster bootstrap, clipped to the possible range; a group with too few templates for an
  informative interval gets a reason instead of numbers.

Every function works on a batch of data sets (leading axis R), so the calibration simulations
(``chainforget.metrics.simulate``) run this very code on hundreds of simulated tasks at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from chainforget.metrics.distributions import chi2_ppf

ALPHA = 0.05
FLOOR_SHARE = 0.1  # a group's variance is at least this share of the pooled per-example variance (0/0 guard)
MIN_CLUSTERS = 3  # fewer templates than this in a group: no per-group interval
_CELLS = 4_000_000  # clusters x replicates x groups handled at once (memory)
Bounds = tuple[float | None, float | None]


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

    def batch(self) -> "Batch":
        return Batch(self.group, self.sizes, self.totals[None], np.array([self.pooled_var]), self.n_groups)


@dataclass(frozen=True)
class Batch:
    """R data sets of one design (the same clusters and groups): ``totals[r, s, c]``."""

    group: np.ndarray  # [C]
    sizes: np.ndarray  # [C]
    totals: np.ndarray  # [R, S, C]
    pooled: np.ndarray  # [R]
    n_groups: int


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
    return Clustered(names, group, sizes, totals, pooled_variance(values.mean(axis=0), gcode, len(names)))


def pooled_variance(avg: np.ndarray, gcode: np.ndarray, n_groups: int) -> float:
    """Per-example variance of values around their group means (the variance floor's scale)."""
    if not avg.size:
        return 0.0
    counts = np.bincount(gcode, minlength=n_groups).astype(float)
    gmean = np.bincount(gcode, weights=avg, minlength=n_groups) / np.maximum(counts, 1)
    return float(np.mean((avg - gmean[gcode]) ** 2))


def _onehot(labels: np.ndarray, n_groups: int) -> np.ndarray:
    """``[B, C]`` labels -> ``[C, B * G]`` indicator matrix (group sums of many labelings by one product)."""
    b, c = labels.shape
    out = np.zeros((c, b, n_groups))
    out[np.arange(c)[:, None], np.arange(b)[None, :], labels.T] = 1.0
    return out.reshape(c, b * n_groups)


def eval_moments(avg: np.ndarray, sizes: np.ndarray, labels: np.ndarray, n_groups: int, pooled: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Size-weighted group means and their cluster-robust variances ``[R, B, G]`` of seed-averaged cluster totals
    ``avg [R, C]`` under the labelings ``labels [B, C]``.

    ``vE_g = k/(k-1) * sum_c (T_c - n_c m_g)^2 / n_g^2`` (k = the group's clusters; one cluster: the pooled variance
    times the largest cluster over n_g), floored at ``FLOOR_SHARE`` pooled variances over n_g.
    """
    r, (b, c), g = avg.shape[0], labels.shape, n_groups
    oh = _onehot(labels, g)
    fixed = (np.stack([np.ones(c), sizes, sizes * sizes]) @ oh).reshape(3, 1, b, g)
    k, n, sum_mm = fixed
    data = (np.concatenate([avg, avg * sizes, avg * avg]) @ oh).reshape(3, r, b, g)
    sum_a, sum_ma, sum_aa = data
    mean = sum_a / n
    ss = np.maximum(sum_aa - 2 * mean * sum_ma + mean ** 2 * sum_mm, 0.0)
    pooled = pooled[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(k >= 2, k / np.maximum(k - 1, 1) * ss / n ** 2, pooled * sizes.max() / n)
    return mean, np.maximum(var, np.maximum(FLOOR_SHARE * pooled / n, 1e-12))


def interaction(batch: Batch) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(``s_b^2 [R]``, ``W [R, G]``, df, ``SS [R]``): the excess group x seed interaction variance of the per-seed
    group means, the evaluation part, the degrees of freedom and the interaction sum of squares.

    ``SS`` = the double-centred (groups and seeds) sum of squares of the per-seed group means; its expectation is
    ``(G-1)(S-1) sigma_b^2 + (1 - 1/G) sum_g W_g`` with ``W_g = sum_s Var(seed s's group-g evaluation noise minus
    the seeds' average)``, estimated cluster-robustly from the per-example deviations from the seed average. So
    ``s_b^2 = max(0, (SS - (1 - 1/G) sum_g W_g) / ((G-1)(S-1)))``. Groups with one cluster add 0 to ``W``
    (conservative: ``s_b^2`` is then over- rather than underestimated).
    """
    r, s, c = batch.totals.shape
    g = batch.n_groups
    if s < 2:
        return np.zeros(r), np.zeros((r, g)), 0, np.zeros(r)
    oh = _onehot(batch.group[None], g)  # [C, G]
    k, n = np.ones(c) @ oh, batch.sizes @ oh
    per_seed = (batch.totals @ oh) / n  # [R, S, G]
    dev = batch.totals - batch.totals.mean(axis=1, keepdims=True)  # [R, S, C]
    dev_mean = (dev @ oh) / n
    resid = dev - batch.sizes * dev_mean[..., batch.group]
    ss_dev = ((resid ** 2) @ oh).sum(axis=1)  # [R, G]
    w = np.where(k >= 2, k / np.maximum(k - 1, 1) * ss_dev / n ** 2, 0.0)
    x = per_seed - per_seed.mean(axis=1, keepdims=True)
    x = x - x.mean(axis=2, keepdims=True)
    df = (g - 1) * (s - 1)
    ss = (x ** 2).sum(axis=(1, 2))
    return np.maximum((ss - (1 - 1 / g) * w.sum(axis=1)) / df, 0.0), w, df, ss


def _training_replicates(ss: np.ndarray, w: np.ndarray, n_seeds: int, b: int, rng: np.random.Generator
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(group shifts ``[R, b, G]``, re-estimated ``s_b^2 [R, b]``) of simulated group x seed interactions.

    Each replicate first draws a training variance from what the data allow: ``E[SS] = df (sigma_b^2 + wbar)``
    with ``wbar = (1 - 1/G) sum_g W_g / df``, so ``sigma_k^2 = max(0, SS / chi2_k - wbar)`` with ``chi2_k ~ chi2(df)``
    (a fiducial draw, as in generalized p-values for variance components; plugging in the point estimate made the
    test liberal with 2 seeds, 0.09, because an underestimate lightens the reference's tail). It then draws per-seed
    shifts N(0, sigma_k^2) plus seed-specific evaluation noise of total variance ``W_g``, and re-estimates
    ``s_b^2`` from them exactly as :func:`interaction` does (its few degrees of freedom and its floor at 0 are part
    of the reference)."""
    r, g = w.shape
    df = (g - 1) * (n_seeds - 1)
    wbar = (1 - 1 / g) * w.sum(axis=1) / df
    truth = np.maximum(ss[:, None] / rng.chisquare(df, size=(r, b)) - wbar[:, None], 0.0)
    shifts = rng.standard_normal((r, b, g, n_seeds)) * np.sqrt(truth)[:, :, None, None]
    noise = rng.standard_normal((r, b, g, n_seeds)) * np.sqrt(w / (n_seeds - 1))[:, None, :, None]
    x = shifts + noise - noise.mean(axis=-1, keepdims=True)
    x = x - x.mean(axis=-1, keepdims=True)
    x = x - x.mean(axis=-2, keepdims=True)
    again = np.maximum(((x ** 2).sum(axis=(-1, -2)) - (1 - 1 / g) * w.sum(axis=1)[:, None]) / df, 0.0)
    return shifts.mean(axis=-1), again


def q_statistic(means: np.ndarray, variances: np.ndarray, tau2: np.ndarray | float = 0.0) -> np.ndarray:
    """``Q(tau^2) = sum_g w_g (m_g - mu_w)^2`` with ``w_g = 1 / (v_g + tau^2)`` (last axis = groups)."""
    w = 1.0 / (variances + np.asarray(tau2)[..., None])
    mu = (w * means).sum(-1) / w.sum(-1)
    return (w * (means - mu[..., None]) ** 2).sum(-1)


def solve_tau2(means: np.ndarray, variances: np.ndarray, target: np.ndarray | float, iterations: int = 60
               ) -> np.ndarray:
    """The tau^2 >= 0 with ``Q(tau^2) = target`` (Q decreases in tau^2); 0 where ``Q(0) <= target``, inf where the
    target is 0."""
    target = np.asarray(target, dtype=float)
    ss = ((means - means.mean(-1, keepdims=True)) ** 2).sum(-1)
    safe = np.maximum(target, 1e-300)
    low = np.zeros(np.broadcast_shapes(ss.shape, target.shape))
    high = ss / safe + 1e-12  # Q(tau^2) <= ss / tau^2, so Q(high) <= target
    above = q_statistic(means, variances, low) > target
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        bigger = q_statistic(means, variances, mid) > target
        low, high = np.where(bigger, mid, low), np.where(bigger, high, mid)
    return np.where(target <= 0, np.inf, np.where(above, 0.5 * (low + high), 0.0))


@dataclass(frozen=True)
class Analysis:
    """The spread analysis of R data sets: every field has leading axis R."""

    means: np.ndarray  # [R, G] seed-averaged, size-weighted group means
    variances: np.ndarray  # [R, G] v_g = vE_g + s_b^2 / S
    eval_variances: np.ndarray  # [R, G] vE_g
    seed_group_var: np.ndarray  # [R] s_b^2 (0 with one seed)
    q: np.ndarray  # [R] Q(0)
    p: np.ndarray  # [R]
    ref_means: np.ndarray  # [R, B, G] replicate group means under "no group effect"
    ref_variances: np.ndarray  # [R, B, G] their re-estimated variances
    effects: np.ndarray  # [B, G] standard normal group effects (scaled by tau for the reference at tau)
    n_seeds: int
    alpha: float = ALPHA

    def pvalues(self, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(upper, lower) p of ``Q(tau^2)`` against its reference at ``tau`` (``[R]``): the replicates'
        ``Q(tau^2)`` of ``(m* + tau z, v*)``, the replicates from group-centred residuals (no group effect leaks
        into them) plus random group effects of SD tau."""
        tau = np.asarray(tau, dtype=float)
        tau2 = tau ** 2
        observed = q_statistic(self.means, self.variances, tau2)
        star = q_statistic(self.ref_means + tau[:, None, None] * self.effects, self.ref_variances, tau2[:, None])
        tolerance = 1e-9 * np.maximum(1.0, np.abs(observed))[:, None]
        b = star.shape[1]
        upper = (1.0 + np.count_nonzero(star >= observed[:, None] - tolerance, axis=1)) / (1.0 + b)
        lower = (1.0 + np.count_nonzero(star <= observed[:, None] + tolerance, axis=1)) / (1.0 + b)
        return upper, lower

    def interval(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(PM estimate, low, high): tau = 0 is kept iff ``p >= alpha``, tau > 0 iff both p of :meth:`pvalues`
        are at least ``alpha / 2`` (ends found by bisection; the p's are monotone in tau up to Monte Carlo noise)."""
        df = self.means.shape[-1] - 1
        estimate = np.sqrt(solve_tau2(self.means, self.variances, float(df)))
        ss = ((self.means - self.means.mean(-1, keepdims=True)) ** 2).sum(-1)
        top = np.sqrt(ss / (0.1 * chi2_ppf(0.001, df)) + self.variances.max(-1))  # far beyond any plausible tau
        half = self.alpha / 2
        low = _bisect(lambda t: self.pvalues(t)[0] >= half, np.zeros_like(top), top, want_first=True)
        high = _bisect(lambda t: self.pvalues(t)[1] >= half, np.zeros_like(top), top, want_first=False)
        low = np.where(self.p < self.alpha, low, 0.0)
        keeps_zero = self.pvalues(np.zeros_like(top))[1] >= half
        high = np.where(keeps_zero | (high > 0), high, 0.0)
        return estimate, low, high


def _bisect(inside, low: np.ndarray, high: np.ndarray, want_first: bool, iterations: int = 30) -> np.ndarray:
    """The first (``want_first``) or last tau in ``[low, high]`` where ``inside(tau)`` holds, per data set, assuming
    one switch (inside from the switch on for the first, up to it for the last)."""
    a, b = low.copy(), high.copy()
    for _ in range(iterations):
        mid = 0.5 * (a + b)
        ok = inside(mid)
        if want_first:
            a, b = np.where(ok, a, mid), np.where(ok, mid, b)
        else:
            a, b = np.where(ok, mid, a), np.where(ok, b, mid)
    if want_first:
        return np.where(inside(low), low, b)
    return np.where(inside(high), high, a)


WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])  # mean 0, var 1


def analyse(batch: Batch, n_boot: int, rng: np.random.Generator, alpha: float = ALPHA) -> Analysis:
    """Group means, variances, ``Q(0)`` and its reference replicates' p and quantiles for every data set of the
    batch.

    Evaluation part of a replicate: a wild cluster bootstrap. Each template's residual total (seed-averaged) is
    multiplied by a Webb six-point weight (mean 0, variance 1), and the group means and cluster-robust variances are
    recomputed from these totals. For the test (``p``) the residuals are ``T_c - n_c mu`` around the common mean
    (the null imposed); for the interval's reference at tau > 0 they are ``T_c - n_c m_g`` (a true spread would
    otherwise leak into the replicates' noise and make the interval too wide: coverage 0.98-0.99). Each group keeps its own templates and sizes (permuting templates across groups mixes BBQ's 8- and
    480-example templates and made the size-weighted test conservative, 0.015-0.03), and residuals around the
    common rather than each group's mean keep the size near 5% with 4-8 templates per group (group-centred
    residuals: 0.08 in the quick preset's design). Training part (two seeds or more): :func:`_training_replicates`.
    """
    r, s, c = batch.totals.shape
    g = batch.n_groups
    avg = batch.totals.mean(axis=1)
    means, v_eval = (x[:, 0] for x in eval_moments(avg, batch.sizes, batch.group[None], g, batch.pooled))
    s_b2, w, _, ss = interaction(batch)
    variances = v_eval + s_b2[:, None] / s
    observed = q_statistic(means, variances)
    tolerance = 1e-9 * np.maximum(1.0, np.abs(observed))
    restricted = avg - batch.sizes * (avg.sum(axis=1) / batch.sizes.sum())[:, None]  # around the common mean
    centred = avg - batch.sizes * means[:, batch.group]  # around each group's mean
    null = np.empty((2, r, n_boot, g))  # replicate means and variances, residuals around the common mean
    ref_means, ref_variances = np.empty((r, n_boot, g)), np.empty((r, n_boot, g))  # ... around the group means
    chunk, done = max(1, _CELLS // max(1, r * max(c, g * max(s, 1)))), 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        weights = WEBB[rng.integers(0, WEBB.size, size=(r, b, c))]
        shift, again = _training_replicates(ss, w, s, b, rng) if s >= 2 else (0.0, np.zeros((r, b)))
        for resid, (m_out, v_out) in ((restricted, null), (centred, (ref_means, ref_variances))):
            m_star, v_star = eval_moments((weights * resid[:, None, :]).reshape(r * b, c), batch.sizes,
                                          batch.group[None], g, np.repeat(batch.pooled, b))
            m_out[:, done:done + b] = m_star.reshape(r, b, g) + shift
            v_out[:, done:done + b] = v_star.reshape(r, b, g) + again[..., None] / s
        done += b
    reference = q_statistic(null[0], null[1])
    p = (1.0 + np.count_nonzero(reference >= (observed - tolerance)[:, None], axis=1)) / (1.0 + n_boot)
    effects = rng.standard_normal((n_boot, g))
    return Analysis(means, variances, v_eval, s_b2, observed, p, ref_means, ref_variances, effects, s, alpha)


def spread(cl: Clustered, n_perm: int, rng: np.random.Generator, alpha: float = ALPHA) -> dict:
    """The headline biased-forgetting numbers of one task: tau, its interval, the calibrated p, and Q."""
    result = analyse(cl.batch(), n_perm, rng, alpha)
    estimate, low, high = (float(x[0]) for x in result.interval())
    p = float(result.p[0])
    return {"value": estimate, "ci_low": low, "ci_high": high if math.isfinite(high) else None, "p": p,
            "zero_excluded": p < alpha, "q": float(result.q[0]), "df": cl.n_groups - 1, "seeds": cl.n_seeds,
            "seed_group_sd": float(math.sqrt(result.seed_group_var[0])) if cl.n_seeds >= 2 else None,
            "group_means": result.means[0].tolist(), "group_ses": np.sqrt(result.variances[0]).tolist()}


def group_moments(cl: Clustered) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group means ``m``, variances of the means ``v = vE + s_b^2 / S`` and sizes ``n`` of one task."""
    batch = cl.batch()
    means, v_eval = (x[0, 0] for x in eval_moments(batch.totals.mean(axis=1), cl.sizes, cl.group[None],
                                                    cl.n_groups, batch.pooled))
    s_b2 = interaction(batch)[0][0]
    n = np.bincount(cl.group, weights=cl.sizes, minlength=cl.n_groups)
    return means, v_eval + s_b2 / cl.n_seeds, n


def group_test(cl: Clustered, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """(p, Q(0)) of "no group effect" (see :func:`analyse`); ``p`` is never 0."""
    result = analyse(cl.batch(), n_boot, rng)
    return float(result.p[0]), float(result.q[0])


@dataclass(frozen=True)
class GroupIntervals:
    """Per-group simultaneous intervals; ``reasons[g]`` says why group g has none (then low/high are NaN)."""

    names: tuple[str, ...]
    means: np.ndarray
    low: np.ndarray
    high: np.ndarray
    critical: float
    clusters: np.ndarray  # templates (clusters) per group
    reasons: tuple[str | None, ...]


def group_intervals(cl: Clustered, n_boot: int, rng: np.random.Generator, confidence: float = 0.95,
                    bounds: Bounds = (None, None)) -> GroupIntervals:
    """Per-group intervals ``m_g +- c * se_g`` covering all groups that have one at once, clipped to ``bounds``.

    ``c`` is the ``confidence`` quantile of ``max_g |m*_g - m_g| / se*_g`` over a bootstrap that resamples each
    group's clusters with replacement (seed-averaged values), with ``se*_g`` recomputed in every resample (bootstrap-t:
    the uncertainty of a small group's standard error widens its interval); with seeds each resample adds simulated
    group x seed shifts and a re-estimated ``s_b^2`` (as the spread's reference does). A group with fewer than
    ``MIN_CLUSTERS`` templates, or whose interval would cover the whole possible range, gets the reason
    "too few templates (k) for an interval" and leaves the family (its heavy-tailed t would widen every other
    group's interval).
    """
    m, v, _ = group_moments(cl)
    se = np.sqrt(v)
    avg = cl.totals.mean(axis=0)
    shift, extra = np.zeros((cl.n_groups, n_boot)), np.zeros(n_boot)
    if cl.n_seeds >= 2:  # training noise: simulated as in the spread's reference, s_b^2 re-estimated each time
        _, w, _, ss = interaction(cl.batch())
        moved, again = _training_replicates(ss, w, cl.n_seeds, n_boot, rng)
        shift, extra = moved[0].T, again[0] / cl.n_seeds
    k = np.bincount(cl.group, minlength=cl.n_groups)
    floor = FLOOR_SHARE * cl.pooled_var
    t_star = np.zeros((cl.n_groups, n_boot))
    for g in range(cl.n_groups):
        idx = np.flatnonzero(cl.group == g)
        draw = idx[rng.integers(0, idx.size, size=(n_boot, idx.size))]
        a, size = avg[draw], cl.sizes[draw]
        n = size.sum(axis=1)
        boot = a.sum(axis=1) / n
        ss = ((a - size * boot[:, None]) ** 2).sum(axis=1)
        var = (k[g] / (k[g] - 1) * ss / n ** 2) if k[g] >= 2 else np.full(n_boot, v[g])
        boot_se = np.sqrt(np.maximum(var, np.maximum(floor / n, 1e-12)) + extra)
        t_star[g] = np.abs(boot + shift[g] - m[g]) / boot_se
    lo_b, hi_b = bounds
    family = k >= MIN_CLUSTERS
    c = float(np.quantile(t_star[family].max(axis=0), confidence)) if family.any() else math.inf
    whole = ((m - c * se <= lo_b) & (m + c * se >= hi_b) if lo_b is not None and hi_b is not None
             else np.zeros(cl.n_groups, dtype=bool))
    active = family & ~whole
    low, high = m - c * se, m + c * se
    if lo_b is not None:
        low, high = np.maximum(low, lo_b), np.maximum(high, lo_b)
    if hi_b is not None:
        low, high = np.minimum(low, hi_b), np.minimum(high, hi_b)
    reasons = tuple(None if active[g] else f"too few templates ({int(k[g])}) for an interval"
                    for g in range(cl.n_groups))
    low, high = np.where(active, low, np.nan), np.where(active, high, np.nan)
    return GroupIntervals(cl.names, m, low, high, c, k, reasons)


def simultaneous_intervals(cl: Clustered, n_boot: int, rng: np.random.Generator, confidence: float = 0.95,
                           bounds: Bounds = (None, None)) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(means, low, high, c) of :func:`group_intervals`; low/high are NaN for a group without an interval (its
    reason is in ``group_intervals(...).reasons``)."""
    res = group_intervals(cl, n_boot, rng, confidence, bounds)
    return res.means, res.low, res.high, res.critical
