"""Is a per-group difference in forgetting real or noise? Paired stratified bootstrap CIs and a permutation test.

Both work on the per-example differences ``d_j = sign * (score_j[before] - score_j[after])`` of ONE task, so
before and after are paired (the same examples). The bootstrap resamples examples with replacement within each
group (group sizes stay fixed); the permutation test shuffles group labels over the differences. Everything is
vectorised with numpy and seeded, so the same inputs give identical numbers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


def task_rng(seed: int, task: str, purpose: int) -> np.random.Generator:
    """A generator per (seed, task, purpose): adding a task to a run does not change another task's intervals."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(task.encode()), purpose]))


def percentile_ci(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Percentile interval of bootstrap samples (NaN samples ignored; None when there are none)."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap distributions of one task's forgetting: overall, per group, and the range over eligible groups."""

    overall: np.ndarray  # [n_boot]
    groups: dict[str, np.ndarray]  # group -> [n_boot]
    biased: np.ndarray | None  # max - min over eligible groups, [n_boot]; None with fewer than 2 such groups


def paired_differences(values: np.ndarray, before: int, after: int, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """``sign * (x[before] - x[after])`` for examples evaluated at both stages, and the mask of those examples."""
    keep = ~np.isnan(values[:, before]) & ~np.isnan(values[:, after])
    return sign * (values[keep, before] - values[keep, after]), keep


def bootstrap(diffs: np.ndarray, labels: Sequence[str], eligible: Sequence[str], n_boot: int,
              rng: np.random.Generator) -> Bootstrap:
    """Resample examples within each group (paired differences), ``n_boot`` times, in one vectorised pass per group."""
    labels = np.asarray(labels, dtype=object)
    total = np.zeros(n_boot)
    group_means = {}
    for group in sorted(set(labels.tolist())):
        d = diffs[labels == group]
        idx = rng.integers(0, d.size, size=(n_boot, d.size))
        sums = d[idx].sum(axis=1)
        total += sums
        group_means[group] = sums / d.size
    overall = total / diffs.size if diffs.size else np.full(n_boot, np.nan)
    chosen = [g for g in sorted(eligible) if g in group_means]
    biased = None
    if len(chosen) >= 2:
        stacked = np.stack([group_means[g] for g in chosen])
        biased = stacked.max(axis=0) - stacked.min(axis=0)
    return Bootstrap(overall, group_means, biased)


def between_group_ss(sums: np.ndarray, counts: np.ndarray, total: float, n: int) -> np.ndarray:
    """Between-group sum of squares ``sum_g n_g (mean_g - mean)^2`` from group sums (last axis = groups)."""
    return (sums ** 2 / counts).sum(axis=-1) - total ** 2 / n


def permutation_pvalue(diffs: np.ndarray, labels: Sequence[str], n_perm: int, rng: np.random.Generator
                       ) -> tuple[float | None, float | None]:
    """p-value of "the mean difference does not depend on the group": shuffle labels, statistic = between-group SS.

    Returns ``(p, observed statistic)``; ``p = (1 + #{perm >= observed}) / (1 + n_perm)`` (never 0). None when
    fewer than two groups are given.
    """
    labels = np.asarray(labels, dtype=object)
    names = sorted(set(labels.tolist()))
    if len(names) < 2 or diffs.size == 0:
        return None, None
    codes = np.searchsorted(np.array(names, dtype=object), labels).astype(np.int64)
    n, k = diffs.size, len(names)
    counts = np.bincount(codes, minlength=k).astype(float)
    total = float(diffs.sum())
    observed = float(between_group_ss(np.bincount(codes, weights=diffs, minlength=k), counts, total, n))
    # Shuffling the differences over fixed, contiguous group blocks is the same as shuffling the labels.
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(k))
    shuffled = rng.permuted(np.broadcast_to(diffs[order], (n_perm, n)), axis=1)
    stats = between_group_ss(np.add.reduceat(shuffled, starts, axis=1), counts, total, n)
    tolerance = 1e-12 * max(1.0, abs(observed))  # equal statistics up to rounding count as "at least as extreme"
    exceed = int(np.count_nonzero(stats >= observed - tolerance))
    return (1.0 + exceed) / (1.0 + n_perm), observed
