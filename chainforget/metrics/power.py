"""How large must a study be? Power and sample sizes of the paper's three questions from a pilot's variance components.

A pilot (finished runs with several seeds, scored on the same examples) gives per-example values ``x[s, j]`` of the
quantity each question averages: the paired forgetting difference strategy - baseline (mitigation), a task's
forgetting (group dependence), the per-example linearisation of a task's relative forgetting (order asymmetry). They
are split into variance components (method of moments, each floored at 0):

- ``template``: between-template variance of the templates' mean effects (examples of one template share it);
- ``example``: per-example variance shared by the seeds (the same examples are scored for every seed);
- ``residual``: seed x example variance (answers that change from one trained model to the next);
- ``seed``: training randomness of the whole task's mean, and ``seed_by_group``: of a group's mean around it.

A planned design (``n`` examples per group, ``S`` seeds) then has the variances the product's own statistics
(``metrics.inference``) estimate, each with the quantile it uses: the evaluation noise the seeds share (the joint
cluster covariance, t(clusters - groups)) and the between-seed variance (t(S - 1), itself estimated from S values). The
power is computed exactly under normality for that procedure: the between-seed estimate is a scaled chi-square, so
the power of "the interval excludes 0" is an average over its distribution (a quantile grid), not the usual
"z_alpha + z_beta" shortcut, which is optimistic by 10-30 points with 2-3 seeds. The group test is the seeds' F test
of the group effect (numerator: the spread ``tau^2`` over the group means' variance), with its power from the
non-central-by-scaling F of the random-effects model. Seeded simulations that use the product's statistics check the
claims (tests/metrics/test_power.py).

Templates limit what more examples buy: ``K(n)`` templates per group grow with ``n`` as in the pilot until the eval
split has no more (``max_templates``), and the template variance never shrinks below ``template / K_max``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from chainforget.metrics.distributions import normal_ppf, t_ppf

ALPHA = 0.05
POWER = 0.80
GRID_ONE = 400  # quantile points for one estimated variance part
GRID_TWO = 80  # per part when two are estimated (a product grid)

_erfc = np.vectorize(math.erfc, otypes=[float])


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * _erfc(-np.asarray(x, dtype=float) / math.sqrt(2.0))


def _q(level: float, df: float) -> float:
    return normal_ppf(level) if df <= 0 or math.isinf(df) else t_ppf(level, df)


def _normal_ppf(p: np.ndarray) -> np.ndarray:
    """Vectorised standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9)."""
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    p = np.asarray(p, dtype=float)
    out = np.empty_like(p)
    low, high = p < 0.02425, p > 1 - 0.02425
    mid = ~(low | high)
    q = p[mid] - 0.5
    r = q * q
    out[mid] = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    for mask, sign, prob in ((low, 1.0, p[low]), (high, -1.0, 1 - p[high])):
        q = np.sqrt(-2 * np.log(prob))
        out[mask] = sign * (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    return out


@lru_cache(maxsize=512)
def _chi2_grid(df: int, points: int) -> np.ndarray:
    """``chi2(df) / df`` at the midpoints of ``points`` equal-probability strata (its mean is 1 up to the grid):
    Wilson-Hilferty refined by Newton steps on the exact integer-df distribution function."""
    p = (np.arange(points) + 0.5) / points
    if df == 1:
        return _normal_ppf((1 + p) / 2) ** 2
    if df == 2:
        return -np.log1p(-p)
    k = 2.0 / (9.0 * df)
    x = df * np.maximum(1 - k + _normal_ppf(p) * math.sqrt(k), 0.05) ** 3
    log_norm = (df / 2.0) * math.log(2.0) + math.lgamma(df / 2.0)
    for _ in range(30):
        pdf = np.exp((df / 2.0 - 1) * np.log(x) - x / 2.0 - log_norm)
        step = ((1.0 - _chi2_sf(x, df)) - p) / np.maximum(pdf, 1e-300)
        x = np.where(x - step > 0, x - step, x / 10.0)
        if np.max(np.abs(step) / x) < 1e-10:
            break
    return x / df


@dataclass(frozen=True)
class Components:
    """Variance components of one question's per-example quantity, and the pilot design they come from."""

    template: float
    example: float
    residual: float
    seed: float
    seed_by_group: float
    pilot_seeds: int
    groups: int
    pilot_examples: float  # per group
    pilot_templates: float  # per group (= examples when there are no templates)
    max_templates: float = math.inf  # per group, in the eval split
    clustered: bool = False

    def templates_at(self, n: float) -> float:
        """Templates per group that ``n`` examples per group cover: as in the pilot, up to what the split has."""
        if not self.clustered:
            return float(n)
        return float(max(1.0, min(self.max_templates, n, self.pilot_templates * n / self.pilot_examples)))

    def eval_df(self, n: float) -> float:
        """Degrees of freedom of the evaluation covariance: clusters minus groups."""
        return max(1.0, self.groups * (self.templates_at(n) - 1.0))

    def group_mean_variance(self, n: float, seeds: int) -> float:
        """Evaluation variance of one group's mean over ``n`` examples averaged over ``seeds`` seeds."""
        return self.template / self.templates_at(n) + self.example / n + self.residual / (n * seeds)

    def as_dict(self) -> dict:
        return {"template": self.template, "example": self.example, "residual": self.residual, "seed": self.seed,
                "seed_by_group": self.seed_by_group, "pilot_seeds": self.pilot_seeds, "groups": self.groups,
                "pilot_examples_per_group": self.pilot_examples, "pilot_templates_per_group": self.pilot_templates,
                "max_templates_per_group": None if math.isinf(self.max_templates) else self.max_templates}


def estimate(values: np.ndarray, groups: Sequence[str], clusters: Sequence[str] | None = None,
             max_templates: float = math.inf, floor: bool = True, units: Sequence[str] | None = None) -> Components:
    """Components of per-example values ``[S, n]`` (seeds x the same examples) in groups, clusters nested in groups.

    Moments: the seed x example residual from the two-way (seed, example) table within groups; the seed and seed x
    group parts from the per-seed means and the seed x group table, minus the residual they contain; the template
    and example parts from a one-way analysis of the seed-averaged values by template within groups. With one seed
    the residual cannot be told from the example part (it is counted there) and the seed parts are 0: unknown.
    ``floor=False`` keeps negative moment estimates (to build covariances from variances of sums).

    ``units``: the examples an eval limit draws together (BBQ's two questions of one context,
    ``split.eval_sample_unit``). They share more than their template, and a larger sample adds whole units, so the
    analysis runs on unit means and the per-unit variances are stated per example (times the mean unit size):
    otherwise the units' correlation would pass for template variance, which more examples cannot reduce.
    """
    if units is not None:
        return _by_units(values, groups, clusters, max_templates, floor, units)
    cap = (lambda v: max(0.0, v)) if floor else (lambda v: v)
    x = np.atleast_2d(np.asarray(values, dtype=float))
    s, n = x.shape
    names, gcode = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
    g = len(names)
    n_g = np.bincount(gcode, minlength=g).astype(float)
    cell = np.stack([np.bincount(gcode, weights=row, minlength=g) for row in x]) / n_g  # [S, G]
    residual = seed = seed_by_group = 0.0
    if s >= 2 and n > g:
        r = x - x.mean(axis=0)[None, :] - cell[:, gcode] + cell.mean(axis=0)[gcode][None, :]
        residual = float((r ** 2).sum() / ((s - 1) * (n - g)))
        seed = cap(float(x.mean(axis=1).var(ddof=1)) - residual / n)
        if g >= 2:
            inter = cell - cell.mean(axis=1, keepdims=True) - cell.mean(axis=0, keepdims=True) + cell.mean()
            n_h = g / float(np.sum(1.0 / n_g))
            seed_by_group = cap(float((inter ** 2).sum()) / ((s - 1) * (g - 1)) - residual / n_h)
    y = x.mean(axis=0)
    gmean = np.bincount(gcode, weights=y, minlength=g) / n_g
    template, clustered, per_group_templates = 0.0, False, n / g
    if clusters is not None:
        keys = np.array([f"{a}\x1f{b}" for a, b in zip(gcode.tolist(), list(clusters))], dtype=object)
        _, ccode = np.unique(keys, return_inverse=True)
        c = int(ccode.max()) + 1
        if c < n:
            clustered = True
            per_group_templates = c / g
            m_c = np.bincount(ccode, minlength=c).astype(float)
            c_mean = np.bincount(ccode, weights=y, minlength=c) / m_c
            c_group = np.zeros(c, dtype=np.int64)
            c_group[ccode] = gcode
            ms_w = float(((y - c_mean[ccode]) ** 2).sum() / (n - c))
            if c > g:
                ms_b = float((m_c * (c_mean - gmean[c_group]) ** 2).sum() / (c - g))
                m0 = (n - float(np.sum(np.bincount(c_group, weights=m_c ** 2, minlength=g) / n_g))) / (c - g)
                template = cap((ms_b - ms_w) / m0)
            within = ms_w
    if not clustered:
        within = float(((y - gmean[gcode]) ** 2).sum() / max(n - g, 1))
    example = cap(within - residual / s)
    return Components(template, example, residual, seed, seed_by_group, s, g, n / g, per_group_templates,
                      max_templates if clustered else math.inf, clustered)


def _by_units(values, groups, clusters, max_templates, floor, units) -> Components:
    x = np.atleast_2d(np.asarray(values, dtype=float))
    n = x.shape[1]
    cl = list(clusters) if clusters is not None else [""] * n
    keys = np.array([f"{g}\x1f{c}\x1f{u}" for g, c, u in zip(groups, cl, units)], dtype=object)
    first, ucode = np.unique(keys, return_index=True, return_inverse=True)[1:]
    count = np.bincount(ucode).astype(float)
    if count.max() <= 1:
        return estimate(x, groups, clusters, max_templates, floor)
    means = np.stack([np.bincount(ucode, weights=row) for row in x]) / count
    ugroups = [groups[i] for i in first]
    uclusters = None if clusters is None else [clusters[i] for i in first]
    c = estimate(means, ugroups, uclusters, max_templates, floor)
    size = n / count.size
    return replace(c, example=c.example * size, residual=c.residual * size, pilot_examples=c.pilot_examples * size,
                   pilot_templates=c.pilot_templates if c.clustered else c.pilot_templates * size)


def linearised_ratio(forget: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Per-example values whose mean moves as the ratio ``mean(forget) / mean(gain)`` does (delta method):
    ``(f - R g) / mean(g)`` with the seed-averaged ratio ``R``, so that a ratio plans like a mean."""
    f = np.atleast_2d(np.asarray(forget, dtype=float))
    g = np.atleast_2d(np.asarray(gain, dtype=float))
    gbar = float(g.mean())
    if gbar <= 0:
        raise ValueError("the gain is not positive: the ratio has no delta-method linearisation")
    return (f - (float(f.mean()) / gbar) * g) / gbar


# -- the variances of a planned design, as the product's statistics estimate them ----------------------------------
@dataclass(frozen=True)
class Part:
    """A variance part of a test's half-width: ``var`` with quantile df ``df`` (0 = normal); an ``estimated`` part
    is ``max(0, var * chi2(df)/df - offset)`` (the excess between-seed variance, from S values)."""

    var: float
    df: float
    offset: float = 0.0
    estimated: bool = False


def mean_design(c: Components, n: float, seeds: int) -> tuple[float, list[Part]]:
    """(true variance, parts) of a mean over ``c.groups`` groups of ``n`` examples (stratified) and ``seeds`` seeds,
    split as ``inference.seed_parts`` splits it: the evaluation noise the seeds share (from the clusters,
    t(clusters - groups)) and the between-seed variance of the per-seed means / S (from S values, t(S - 1)), which
    holds the training randomness and the seed-specific evaluation noise."""
    g = c.groups
    shared = (c.template / c.templates_at(n) + c.example / n) / g
    resid = c.residual / (n * g)
    if seeds < 2:
        return shared + resid + c.seed, [Part(shared + resid, c.eval_df(n))]
    between = (c.seed + resid) / seeds
    return shared + between, [Part(shared, c.eval_df(n)), Part(between, seeds - 1, 0.0, True)]


def effect_power(delta: float, true_var: float, parts: Sequence[Part], alpha: float = ALPHA) -> float:
    """P(the two-sided level-``alpha`` interval ``value +- sqrt(sum q_k^2 var_k)`` excludes 0) when the value is
    N(delta, true_var) and the estimated parts are independent scaled chi-squares (exact under normality)."""
    level = 1.0 - alpha / 2.0
    fixed = sum(_q(level, p.df) ** 2 * p.var for p in parts if not p.estimated)
    h2 = np.full(1, fixed)
    estimated = [p for p in parts if p.estimated]
    points = GRID_ONE if len(estimated) <= 1 else GRID_TWO
    for p in estimated:
        term = _q(level, p.df) ** 2 * np.maximum(p.var * _chi2_grid(int(p.df), points) - p.offset, 0.0)
        h2 = (h2[:, None] + term[None, :]).ravel()
    if true_var <= 0:
        return float(np.mean(abs(delta) > np.sqrt(h2)))
    h, sd = np.sqrt(h2), math.sqrt(true_var)
    return float(np.mean(_phi((delta - h) / sd) + _phi((-delta - h) / sd)))


def mean_power(c: Components, delta: float, n: float, seeds: int, alpha: float = ALPHA) -> float:
    """Power of the mitigation difference (a paired mean) to detect ``delta`` with ``n`` examples per group."""
    return effect_power(delta, *mean_design(c, n, seeds), alpha)


# -- order asymmetry: a difference of two ratios -------------------------------------------------------------------
COMPONENTS = ("template", "example", "residual", "seed")
RATIO_DRAWS = 4000  # Monte Carlo draws of the ratio test's power (SE about 0.006 at 0.8)


@dataclass(frozen=True)
class RatioSide:
    """One order's ratio forgetting / gain: each component as a 2x2 covariance of (forgetting, gain), the pilot's
    mean forgetting and gain, and the design (groups, templates) as :class:`Components` of the linearised ratio."""

    f: float
    g: float
    matrices: dict
    design: Components

    @property
    def ratio(self) -> float:
        return self.f / self.g

    def variances(self, n: float, seeds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(true covariance, shared evaluation part, covariance of the per-seed means, eval df) of the seed-averaged
        (mean forgetting, mean gain) at ``n`` examples per group (as ``inference.ratio_parts`` splits them)."""
        c, m = self.design, self.matrices
        gr = c.groups
        shared = (m["template"] / c.templates_at(n) + m["example"] / n) / gr
        per_seed = m["seed"] + m["residual"] / (n * gr)
        return shared + per_seed / seeds, shared, per_seed, c.eval_df(n)


def _psd(a: np.ndarray) -> np.ndarray:
    w, vec = np.linalg.eigh((a + a.T) / 2.0)
    return (vec * np.maximum(w, 0.0)) @ vec.T


def ratio_side(forget: np.ndarray, gain: np.ndarray, groups: Sequence[str], clusters: Sequence[str] | None = None,
               max_templates: float = math.inf, units: Sequence[str] | None = None) -> RatioSide:
    """The components of a ratio's (forgetting, gain) per example ``[S, n]``: variances of each and of their sum
    give the covariances (moments unfloored, then each matrix projected to the nearest positive semi-definite)."""
    f = np.atleast_2d(np.asarray(forget, dtype=float))
    g = np.atleast_2d(np.asarray(gain, dtype=float))
    parts = [estimate(x, groups, clusters, max_templates, False, units) for x in (f, g, f + g)]
    matrices = {}
    for name in COMPONENTS:
        vf, vg, vs = (getattr(p, name) for p in parts)
        cov = (vs - vf - vg) / 2.0
        matrices[name] = _psd(np.array([[vf, cov], [cov, vg]]))
    design = estimate(linearised_ratio(f, g), groups, clusters, max_templates, units=units)
    return RatioSide(float(f.mean()), float(g.mean()), matrices, design)


def asymmetry_power(first: RatioSide, second: RatioSide, delta: float, n_first: float, n_second: float,
                    seeds: int, alpha: float = ALPHA, draws: int = RATIO_DRAWS) -> float:
    """Power of the order-asymmetry test (Fieller per ratio, MOVER for the difference: ``inference.mover``) to
    detect a difference ``delta`` of the two ratios, by Monte Carlo with fixed draws (the same for every design, so
    the power is smooth in ``n``). The ratios are placed ``delta`` apart around the pilot's midpoint, in the pilot's
    direction, each with its pilot gain; the between-seed part is drawn as a Wishart of ``seeds - 1`` df."""
    from chainforget.metrics import inference

    rng = np.random.default_rng(20_260_000 + seeds)
    centre = (first.ratio + second.ratio) / 2.0
    sign = 1.0 if first.ratio >= second.ratio else -1.0
    sides = []
    for side, n, target in ((first, n_first, centre + sign * delta / 2), (second, n_second, centre - sign * delta / 2)):
        true, shared, per_seed, df = side.variances(n, seeds)
        mean = np.array([target * side.g, side.g])
        draw = mean + rng.standard_normal((draws, 2)) @ np.linalg.cholesky(true + 1e-18 * np.eye(2)).T
        if seeds >= 2:
            z = rng.standard_normal((draws, seeds - 1, 2)) @ np.linalg.cholesky(per_seed + 1e-18 * np.eye(2)).T
            between = np.einsum("msi,msj->mij", z, z) / (seeds - 1)
            parts = ((shared, df), (between / seeds, seeds - 1))
        else:
            parts = ((shared + per_seed, df),)
        sides.append((draw[:, 0], draw[:, 1], parts))
    low, high = inference.mover(sides[0], sides[1], 1.0 - alpha)
    return float(np.mean((low > 0) | (high < 0)))


# -- the group test ----------------------------------------------------------------------------------------------
def _chi2_sf(x: np.ndarray, df: int) -> np.ndarray:
    """P(chi2(df) > x) for an integer ``df``, vectorised (the closed forms of the even and odd cases)."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    half = x / 2.0
    if df % 2 == 0:
        term, total = np.ones_like(x), np.ones_like(x)
        for k in range(1, df // 2):
            term = term * half / k
            total = total + term
        return np.exp(-half) * total
    root = np.sqrt(x)
    total = _erfc(root / math.sqrt(2.0))
    term = np.sqrt(2.0 / math.pi) * root * np.exp(-half)
    for k in range(1, (df - 1) // 2 + 1):
        total = total + term
        term = term * x / (2 * k + 1)
    return total


def _f_sf(x: float, df1: int, df2: float) -> float:
    """P(F(df1, df2) > x); df2 = inf is chi2(df1)/df1."""
    if math.isinf(df2):
        return float(_chi2_sf(np.array([x * df1]), df1)[0])
    grid = _chi2_grid(int(df2), GRID_ONE)
    return float(np.mean(_chi2_sf(x * df1 * grid, df1)))


@lru_cache(maxsize=512)
def _f_crit(alpha: float, df1: float, df2: float) -> float:
    low, high = 0.0, 1.0
    while _f_sf(high, df1, df2) > alpha:
        high *= 2.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if _f_sf(mid, df1, df2) > alpha else (low, mid)
    return 0.5 * (low + high)


def spread_design(c: Components, n: float, seeds: int) -> tuple[float, float]:
    """(variance ``v`` of a group's seed-averaged mean, denominator df of the test's F reference) at ``n`` per group.

    Both parts of ``v`` are estimated: each group's evaluation variance from its own templates (Welch's ANOVA df for
    equal weights, ``(G + 1) G (K - 1) / (3 (G - 1))``) and the seed x group variance from ``(G - 1)(S - 1)``
    interaction df; Satterthwaite combines them."""
    g = c.groups
    eval_var = c.group_mean_variance(n, seeds)
    seed_var = c.seed_by_group / seeds if seeds >= 2 else 0.0
    df_eval = (g + 1) * g * max(c.templates_at(n) - 1.0, 1.0) / (3.0 * max(g - 1, 1))
    spread = eval_var ** 2 / df_eval
    if seed_var > 0:
        spread += seed_var ** 2 / ((g - 1) * (seeds - 1))
    df = (eval_var + seed_var) ** 2 / spread
    return eval_var + seed_var, (math.inf if df > 1000 else float(math.floor(df)))


def spread_power(c: Components, tau: float, n: float, seeds: int, alpha: float = ALPHA) -> float:
    """Power of the group test when the groups' true forgetting has between-group SD ``tau`` (random effects):
    ``Q / (1 + tau^2 / v)`` follows the null distribution, so power = P(F > F_crit / (1 + tau^2 / v))."""
    v, df2 = spread_design(c, n, seeds)
    df1 = c.groups - 1
    crit = _f_crit(alpha, df1, df2)
    return _f_sf(crit / (1.0 + tau ** 2 / v), df1, df2)


# -- sizing ------------------------------------------------------------------------------------------------------
def smallest(power_at: Callable[[int], float], target: float, low: int, high: int) -> int | None:
    """The smallest integer ``n`` in [low, high] with ``power_at(n) >= target`` (power rises with n), or None."""
    if high < low or power_at(high) < target:
        return None
    if power_at(low) >= target:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if power_at(mid) >= target else (mid, high)
    return high


def with_seed_prior(c: Components, seed_sd: float | None, seed_by_group_sd: float | None) -> Components:
    """The components with the training-randomness parts replaced by user-given SDs (a one-seed pilot knows none)."""
    changes = {}
    if seed_sd is not None:
        changes["seed"] = seed_sd ** 2
    if seed_by_group_sd is not None:
        changes["seed_by_group"] = seed_by_group_sd ** 2
    return replace(c, **changes)


def noisiest(items: Sequence[Components], variance_at: Callable[[Components], float]) -> int:
    """Index of the noisiest of several comparisons of one question (largest ``variance_at``): a plan that
    detects the effect there detects it in the others."""
    return max(range(len(items)), key=lambda i: variance_at(items[i]))
