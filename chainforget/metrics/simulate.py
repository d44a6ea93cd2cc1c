"""Seeded simulations of per-example forgetting, shared by the calibration tests and bench/bench_stats_calibration.py.

An example's paired difference ``d = before - after`` of a 0/1 score is -1, 0 or +1, as for accuracy. A group (or a
template inside it) with mean forgetting ``theta`` and churn ``c`` (the share of examples whose answer changes) has
``P(d = +1) = (c + theta) / 2`` and ``P(d = -1) = (c - theta) / 2``, so its variance is ``c - theta^2``: the churn
sets the noise, independently of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from chainforget.metrics.effects import spread_mde
from chainforget.metrics.spread import (
    Batch,
    Clustered,
    analyse,
    group_intervals,
    group_moments,
    simultaneous_intervals,
)

# The shipped BBQ eval split as the task loader gives it (tests/metrics/test_simulate_designs.py checks these against
# it): per category (sorted by name), the examples of each template, sorted. 15,900 examples, templates of 8-480.
BBQ_EVAL_TEMPLATE_SIZES = (
    (32, 32, 72, 72, 96, 128, 128, 128, 160, 160, 200, 280, 288),
    (12, 16, 32, 32, 32, 48, 48, 48, 48, 48, 120, 168, 240),
    (8, 8, 8, 8, 8, 8, 8, 8, 8, 48, 72, 128, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    (40, 40, 40, 40, 40, 120, 120, 200, 200, 200, 200, 200, 200),
    (32, 32, 32, 48, 72, 72, 72, 72, 72, 72, 96, 128, 200),
    (40, 40, 40, 40, 80, 80, 80, 80, 80, 80, 80, 80, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    (40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 80, 120),
    (48, 48, 48, 48, 48, 48, 48, 480, 480, 480, 480, 480, 480),
    (32,) * 13,
)
# The paper preset's BBQ eval sample (limit_eval 1000, drawn by context: ~111 per category).
BBQ_PAPER_TEMPLATE_SIZES = (
    (4, 4, 4, 6, 8, 8, 8, 8, 10, 14, 18, 19), (2, 2, 2, 2, 4, 4, 7, 12, 20, 26, 30),
    (2, 2, 4, 6, 6, 6, 6, 8, 10, 10, 11, 12, 12, 16), (2, 2, 2, 4, 4, 8, 8, 10, 14, 15, 18, 24),
    (2, 4, 4, 6, 8, 8, 10, 10, 12, 14, 16, 17), (2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 5, 6, 6, 6, 8, 8, 8, 8, 10, 12),
    (2, 4, 4, 6, 6, 8, 8, 8, 8, 10, 10, 14, 24), (2, 4, 4, 6, 12, 19, 20, 22, 22), (4, 7, 8, 8, 8, 8, 10, 10, 10, 12, 12, 14),
)
# The quick preset's BBQ eval sample (limit_eval 180: 20 per category, both questions of 10 contexts).
BBQ_QUICK_TEMPLATE_SIZES = (
    (2, 2, 2, 2, 2, 2, 4, 4), (2, 4, 6, 8), (2, 2, 2, 2, 4, 4, 4), (2, 2, 2, 2, 2, 4, 6), (2, 2, 2, 2, 2, 4, 6),
    (2, 2, 2, 2, 2, 2, 4, 4), (2, 2, 2, 2, 2, 2, 4, 4), (2, 2, 4, 6, 6), (2, 2, 2, 2, 2, 4, 6),
)
# ToxiGen's eval split (13 target groups, no templates) and the paper preset's sample of it (limit_eval 1000).
TOXIGEN_EVAL_SIZES = (211, 214, 212, 205, 166, 214, 214, 205, 209, 206, 211, 206, 215)
TOXIGEN_PAPER_SIZES = (77,) * 11 + (76, 77)

BBQ_EVAL_SIZES = tuple(sum(t) for t in BBQ_EVAL_TEMPLATE_SIZES)  # 1776/892/2920/1640/1000/3400/640/3216/416
BBQ_EVAL_TEMPLATES = tuple(len(t) for t in BBQ_EVAL_TEMPLATE_SIZES)


def ternary(theta: np.ndarray, churn: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One difference in {-1, 0, 1} per entry with mean ``theta`` and churn ``churn`` (theta clipped to +-churn)."""
    churn = np.clip(churn, 1e-9, 1.0)
    theta = np.clip(theta, -churn, churn)
    u = rng.random(np.shape(theta))
    return np.where(u < (churn + theta) / 2, 1.0, np.where(u < churn, -1.0, 0.0))


def design(sizes: Sequence[int], theta: Sequence[float], churn: Sequence[float] | float, rng: np.random.Generator,
           templates: Sequence[int] | None = None, template_sd: float = 0.0, unit_size: int = 1,
           unit_sd: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(differences [n], group labels [n], template labels [n] or None) for groups of ``sizes``.

    With ``templates``, group g's examples are spread evenly over ``templates[g]`` templates, and each template's
    mean forgetting is the group's plus a N(0, template_sd^2) shift (templates are a sample from the group's
    template population, whose mean is theta; examples of a template are correlated). With ``unit_size`` > 1,
    consecutive examples form units (the two questions BBQ asks about one context) that sit in one template and
    share a further N(0, unit_sd^2) shift: the quick preset's eval sample, drawn context by context.
    """
    sizes = np.asarray(sizes)
    churn = np.broadcast_to(np.asarray(churn, dtype=float), sizes.shape)
    groups = np.repeat(np.arange(sizes.size), sizes)
    theta_j, churn_j = np.repeat(np.asarray(theta, dtype=float), sizes), np.repeat(churn, sizes)
    clusters = None
    if templates is not None:
        local_units = np.concatenate([np.arange(n) // unit_size for n in sizes])  # unit number within its group
        local = local_units % np.repeat(np.asarray(templates), sizes)
        offsets = np.repeat(np.cumsum([0, *templates[:-1]]), sizes)
        clusters = offsets + local
        shift = rng.normal(0.0, template_sd, int(np.sum(templates)))  # templates drawn from a population
        theta_j = theta_j + shift[clusters]
        if unit_sd > 0:
            unit_offsets = np.repeat(np.cumsum([0, *(-(-sizes[:-1] // unit_size))]), sizes)  # ceil: units per group
            units = unit_offsets + local_units
            theta_j = theta_j + rng.normal(0.0, unit_sd, int(units.max()) + 1)[units]
        churn_j = np.maximum(churn_j, np.abs(theta_j) + 0.05)
    return ternary(theta_j, churn_j, rng), groups.astype(str), clusters


TRUNCATED_SD = 0.9545977  # standard deviation of N(0, 1) truncated to [-2.5, 2.5]


def random_effects(n_groups: int, tau: float, rng: np.random.Generator, centre: float = 0.1) -> np.ndarray:
    """Group means ``centre + tau * z``: the random-effects model whose tau the spread estimates.

    ``z`` is a standard normal truncated to +-2.5 and rescaled to standard deviation 1, so that every mean is a
    possible forgetting of a 0/1 score (|theta| < 1) and the true spread is exactly ``tau``.
    """
    z = rng.standard_normal(n_groups)
    while np.any(bad := np.abs(z) > 2.5):
        z[bad] = rng.standard_normal(int(bad.sum()))
    return centre + tau * z / TRUNCATED_SD


def clustered(diffs: np.ndarray, groups: np.ndarray, clusters: np.ndarray | None):
    """The :class:`~chainforget.metrics.spread.Clustered` of a simulated design, built from integer codes (fast)."""

    gcode = groups.astype(np.int64) if groups.dtype.kind in "iu" else np.unique(groups, return_inverse=True)[1]
    n_groups = int(gcode.max()) + 1
    ccode = np.arange(diffs.size) if clusters is None else clusters
    n_c = int(ccode.max()) + 1
    group = np.zeros(n_c, dtype=np.int64)
    group[ccode] = gcode
    counts = np.bincount(gcode, minlength=n_groups)
    gmean = np.bincount(gcode, weights=diffs, minlength=n_groups) / np.maximum(counts, 1)
    return Clustered(tuple(str(g) for g in range(n_groups)), group, np.bincount(ccode, minlength=n_c).astype(float),
                     np.bincount(ccode, weights=diffs, minlength=n_c)[None, :],
                     float(np.mean((diffs - gmean[gcode]) ** 2)))


@dataclass(frozen=True)
class SeedDesign:
    """A fixed evaluation design (groups, templates, contexts) that several seeds score: the examples are sorted by
    template, and consecutive examples of a template form its contexts (``unit_size`` of them each)."""

    name: str
    group: np.ndarray  # [N] group code of each example
    cluster: np.ndarray  # [N] template code (each example its own cluster when the task has no templates)
    unit: np.ndarray  # [N] context code
    churn: np.ndarray  # [G] share of examples whose answer changes
    template_sd: float = 0.15
    unit_sd: float = 0.3

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1


def seed_design(name: str, template_sizes: Sequence[Sequence[int]], churn: Sequence[float] | float,
                template_sd: float = 0.15, unit_size: int = 2, unit_sd: float = 0.3) -> SeedDesign:
    """A :class:`SeedDesign` from the examples per template of each group (one template of size n = a group of n
    examples without templates: pass ``template_sd=0, unit_size=1, unit_sd=0`` and singleton templates)."""
    sizes = [n for group in template_sizes for n in group]
    group = np.repeat(np.repeat(np.arange(len(template_sizes)), [len(t) for t in template_sizes]), sizes)
    cluster = np.repeat(np.arange(len(sizes)), sizes)
    within = np.concatenate([np.arange(n) for n in sizes])
    unit = np.unique(cluster * (max(sizes) + 1) + within // unit_size, return_inverse=True)[1]
    churn = np.broadcast_to(np.asarray(churn, dtype=float), (len(template_sizes),)).copy()
    return SeedDesign(name, group, cluster, unit, churn, template_sd, unit_sd)


def flat_design(name: str, sizes: Sequence[int], churn: Sequence[float] | float) -> SeedDesign:
    """Groups of independent examples (no templates, e.g. ToxiGen): every example is its own cluster."""
    return seed_design(name, [(1,) * n for n in sizes], churn, template_sd=0.0, unit_size=1, unit_sd=0.0)


def seeded_batch(design: SeedDesign, theta: np.ndarray, n_seeds: int, seed_group_sd: float,
                 rng: np.random.Generator, seed_sd: float = 0.03, agree: float = 0.7) -> Batch:
    """R simulated tasks ``[R, S, C]`` of per-example differences scored by ``n_seeds`` seeds on the same examples.

    Seed s's mean forgetting of group g is ``theta[r, g] + b_sg + c_s`` (``b_sg ~ N(0, seed_group_sd^2)``: the
    training noise the group test must not take for a group effect; ``c_s ~ N(0, seed_sd^2)``); templates and
    contexts add shifts shared by the seeds. An example's uniform draws for the seeds lie within
    ``1 - agree`` of each other, so its answers mostly agree across seeds as a real example's do: most evaluation
    noise is common to the seeds (it sits in the group means, not in the group x seed interaction).
    """
    r, g = theta.shape
    n = design.group.size
    mean = theta[:, None, :] + rng.normal(0.0, 1.0, (r, n_seeds, g)) * seed_group_sd
    mean = (mean + rng.normal(0.0, seed_sd, (r, n_seeds, 1))).astype(np.float32)
    shared = np.zeros((r, 1, n), dtype=np.float32)  # template and context shifts, the same for every seed
    if design.template_sd > 0:
        shared += rng.normal(0.0, design.template_sd, (r, 1, int(design.cluster.max()) + 1))[:, :, design.cluster]
    if design.unit_sd > 0:
        shared += rng.normal(0.0, design.unit_sd, (r, 1, int(design.unit.max()) + 1))[:, :, design.unit]
    per_example = mean[:, :, design.group] + shared  # [R, S, N]
    churn = np.clip(np.maximum(design.churn[design.group].astype(np.float32), np.abs(per_example) + 0.05), 1e-9, 1)
    per_example = np.clip(per_example, -churn, churn)
    # (u0 + x) mod 1 is uniform for any x independent of the uniform u0: each seed's draw is uniform, and the
    # seeds' draws of one example lie within ``1 - agree`` of each other (mostly the same answer change).
    u = (rng.random((r, 1, n), dtype=np.float32) + (1 - agree) * rng.random((r, n_seeds, n), dtype=np.float32)) % 1
    up = (churn + per_example) / 2
    diffs = (u < up).astype(float) - ((u >= up) & (u < churn))
    starts = np.flatnonzero(np.r_[True, np.diff(design.cluster) != 0])
    totals = np.add.reduceat(diffs, starts, axis=2)
    sizes = np.diff(np.r_[starts, n]).astype(float)
    group_starts = np.flatnonzero(np.r_[True, np.diff(design.group) != 0])
    avg = diffs.mean(axis=1)
    group_mean = np.add.reduceat(avg, group_starts, axis=1) / np.diff(np.r_[group_starts, n])
    pooled = np.mean((avg - group_mean[:, design.group]) ** 2, axis=1)
    return Batch(design.group[starts], sizes, totals, pooled, g)


def seeded_calibration(design: SeedDesign, n_seeds: int, seed_group_sd: float, reps: int, seed: int,
                       tau: float = 0.0, n_perm: int = 199, chunk: int = 100, shift: float = 0.0,
                       shifted_group: int = 0) -> dict:
    """Size (``tau = 0``: every group forgets 0.03 on average) or power (``tau > 0``, or one group forgetting
    ``shift`` more), and the spread interval's coverage of the true tau, over ``reps`` simulated tasks of ``design`` scored by ``n_seeds`` seeds, with the product's own
    :func:`~chainforget.metrics.spread.analyse` (batched: ``chunk`` tasks share one set of permutations)."""
    rng = np.random.default_rng(seed)
    g = design.n_groups
    rejected, covered, widths, done = 0, 0, [], 0
    while done < reps:
        r = min(chunk, reps - done)
        theta = 0.03 + tau * rng.standard_normal((r, g))  # the random-effects model (|theta| < 1 at tau <= 0.3)
        theta[:, shifted_group] += shift
        batch = seeded_batch(design, theta, n_seeds, seed_group_sd, rng)
        result = analyse(batch, n_perm, rng)
        _, low, high = result.interval()
        rejected += int(np.count_nonzero(result.p < 0.05))
        inside = (result.p >= result.alpha) if tau == 0 else (low <= tau) & (tau <= high)  # 0 is out iff p < alpha
        covered += int(np.count_nonzero(inside))
        widths.append(high - low)
        done += r
    return {"design": design.name, "seeds": n_seeds, "seed_group_sd": seed_group_sd, "tau": tau, "reps": reps,
            "rejection_rate": rejected / reps, "coverage": covered / reps,
            "mean_width": float(np.mean(np.concatenate(widths)))}


def group_interval_coverage(design: SeedDesign, n_seeds: int, seed_group_sd: float, tau: float, reps: int,
                            seed: int, n_boot: int = 199, bounds=(-1.0, 1.0)) -> dict:
    """Share of simulated tasks whose simultaneous per-group intervals (``spread.group_intervals``) cover every
    group's true mean forgetting among the groups that get an interval, the mean share of groups without one
    ("too few templates"), and the mean width of those given."""
    rng = np.random.default_rng(seed)
    g = design.n_groups
    theta = 0.03 + tau * rng.standard_normal((reps, g))
    batch = seeded_batch(design, theta, n_seeds, seed_group_sd, rng)
    hits, missing, widths = 0, [], []
    for r in range(reps):
        cl = Clustered(tuple(str(k) for k in range(g)), batch.group, batch.sizes, batch.totals[r],
                       float(batch.pooled[r]))
        res = group_intervals(cl, n_boot, rng, bounds=bounds)
        given = np.array([why is None for why in res.reasons])
        hits += bool(np.all((res.low[given] <= theta[r, given]) & (theta[r, given] <= res.high[given])))
        missing.append(1.0 - given.mean())
        widths.extend((res.high - res.low)[given].tolist())
    return {"coverage": hits / reps, "no_interval": float(np.mean(missing)),
            "mean_width": float(np.mean(widths)) if widths else None}


def _legacy_design(sizes: Sequence[int], churn, templates: Sequence[int] | None, template_sd: float,
                   unit_size: int, unit_sd: float) -> SeedDesign:
    """Groups of ``sizes`` examples, spread evenly over ``templates[g]`` templates (none: independent examples)."""
    if templates is None:
        return flat_design("groups", sizes, churn)
    per_template = [tuple(np.diff(np.linspace(0, n, k + 1).round().astype(int))) for n, k in zip(sizes, templates)]
    return seed_design("templates", per_template, churn, template_sd, unit_size, unit_sd)


def spread_coverage(n_groups: int, n_per_group: int, tau: float, reps: int, seed: int, n_perm: int = 199,
                    templates: int | None = None, template_sd: float = 0.0, unit_size: int = 1,
                    unit_sd: float = 0.0) -> dict:
    """One seed: share of ``reps`` simulated tasks whose spread interval covers the true tau (random-effects
    model, churn 0.35); with ``templates`` (per group) the examples are clustered and the statistics use templates."""
    design = _legacy_design([n_per_group] * n_groups, 0.35, None if templates is None else [templates] * n_groups,
                            template_sd, unit_size, unit_sd)
    return seeded_calibration(design, 1, 0.0, reps, seed, tau=tau, n_perm=n_perm)


def null_rejection_rate(sizes: Sequence[int], churn: Sequence[float], reps: int, seed: int, n_perm: int = 199,
                        templates: Sequence[int] | None = None, template_sd: float = 0.0, shift: float = 0.0,
                        shifted_group: int = 0, unit_size: int = 1, unit_sd: float = 0.0) -> float:
    """One seed: share of p < 0.05 over ``reps`` tasks: the size when ``shift == 0`` (every group forgets 0.03 on
    average), the power when one group's mean forgetting is ``shift`` higher."""
    design = _legacy_design(sizes, churn, templates, template_sd, unit_size, unit_sd)
    return seeded_calibration(design, 1, 0.0, reps, seed, n_perm=n_perm, shift=shift,
                              shifted_group=shifted_group)["rejection_rate"]


def simultaneous_coverage(n_groups: int, n_per_group: int, tau: float, reps: int, seed: int,
                          n_boot: int = 199) -> float:
    """Share of simulated tasks whose per-group simultaneous intervals cover every group's true mean."""

    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), n_per_group)
    hits = 0
    for _ in range(reps):
        theta = random_effects(n_groups, tau, rng)
        diffs, _, _ = design([n_per_group] * n_groups, theta, np.minimum(1.0, np.abs(theta) + 0.3), rng)
        _, low, high, _ = simultaneous_intervals(clustered(diffs, groups, None), n_boot, rng)
        hits += bool(np.all((low <= theta) & (theta <= high)))
    return hits / reps


def spread_power_at_mde(n_groups: int, n_per_group: int, reps: int, seed: int, n_perm: int = 99) -> dict:
    """The group test's power at the stated minimum detectable spread (``effects.spread_mde``), which is computed
    from the group variances of a null pilot of the same design."""

    rng = np.random.default_rng(seed)
    theta = np.full(n_groups, 0.1)
    diffs, groups, _ = design([n_per_group] * n_groups, theta, np.minimum(1.0, np.abs(theta) + 0.3), rng)
    tau = spread_mde(group_moments(clustered(diffs, np.repeat(np.arange(n_groups), n_per_group), None))[1])
    result = spread_coverage(n_groups, n_per_group, tau, reps, seed + 1, n_perm)
    return {"mde": tau, "power": result["rejection_rate"], "coverage": result["coverage"]}


# -- the methods replaced earlier, kept only to show in docs/metrics.md why they were replaced ---------------------
def old_range_coverage(n_groups: int, n_per_group: int, tau: float, reps: int, seed: int, n_boot: int = 199) -> float:
    """Coverage of the old "bias-corrected" 95% interval of ``max_g - min_g`` (percentile interval of bootstrap
    ranges shifted by the bootstrap bias) for the true range of the groups' mean forgetting."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        theta = random_effects(n_groups, tau, rng)
        diffs, _, _ = design([n_per_group] * n_groups, theta, np.minimum(1.0, np.abs(theta) + 0.3), rng)
        rows = diffs.reshape(n_groups, n_per_group)
        means = rows.mean(axis=1)
        idx = rng.integers(0, n_per_group, size=(n_boot, n_groups, n_per_group))
        boot = np.take_along_axis(np.broadcast_to(rows, idx.shape), idx, axis=2).mean(axis=2)
        ranges = boot.max(axis=1) - boot.min(axis=1)
        estimate = means.max() - means.min()
        low, high = np.percentile(ranges, [2.5, 97.5]) - (ranges.mean() - estimate)
        hits += low <= theta.max() - theta.min() <= high
    return hits / reps


def old_test_size(sizes: Sequence[int], churn: Sequence[float], reps: int, seed: int, n_perm: int = 99,
                  templates: Sequence[int] | None = None, template_sd: float = 0.0) -> float:
    """Size of the old group test: the between-group sum of squares ``sum_g n_g (m_g - m)^2`` with examples (not
    templates) permuted, at nominal 0.05."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes)
    groups = np.repeat(np.arange(sizes.size), sizes)
    theta = np.full(sizes.size, 0.03)
    rejections = 0

    def ss(labels, diffs):
        sums = np.stack([np.bincount(row, weights=diffs, minlength=sizes.size) for row in np.atleast_2d(labels)])
        return (sums ** 2 / sizes).sum(axis=1) - diffs.sum() ** 2 / diffs.size

    for _ in range(reps):
        diffs, _, _ = design(sizes, theta, churn, rng, templates, template_sd)
        observed = ss(groups, diffs)[0]
        perms = rng.permuted(np.broadcast_to(groups, (n_perm, groups.size)), axis=1)
        p = (1 + np.count_nonzero(ss(perms, diffs) >= observed - 1e-12)) / (1 + n_perm)
        rejections += p < 0.05
    return rejections / reps
