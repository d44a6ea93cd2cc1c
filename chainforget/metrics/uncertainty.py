"""Bootstrap intervals of a task's forgetting: paired, stratified by group, resampling whole clusters (templates).

The bootstrap works on the per-example differences ``d_j = sign * (score_j[before] - score_j[after])`` of ONE
task, so before and after are paired (the same examples). Examples generated from one template are correlated, so
the resampled unit is the template (``meta.template`` or a task-declared cluster field), drawn with replacement within
each group. The group-effect test and the spread live in ``spread.py``. Everything is vectorised and seeded.
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
    """Bootstrap distributions of one task's mean value(s): overall and per group, ``[n_boot]`` or ``[n_boot, K]``."""

    overall: np.ndarray
    groups: dict[str, np.ndarray]


def paired_differences(values: np.ndarray, before: int, after: int, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """``sign * (x[before] - x[after])`` for examples evaluated at both stages, and the mask of those examples."""
    keep = ~np.isnan(values[:, before]) & ~np.isnan(values[:, after])
    return sign * (values[keep, before] - values[keep, after]), keep


def bootstrap(columns: np.ndarray, labels: Sequence[str], n_boot: int, rng: np.random.Generator,
              clusters: Sequence[str] | None = None) -> Bootstrap:
    """Resample clusters (templates; examples when ``clusters`` is None) with replacement within each group.

    ``columns`` is ``[n]`` or ``[n, K]`` (K quantities resampled jointly, e.g. a forgetting and a gain). Each resample
    keeps every group's number of clusters; a mean is a ratio (sum over drawn clusters / their examples), so unequal
    templates are weighted by their size as in the point estimate. One vectorised pass per group.
    """
    columns = np.asarray(columns, dtype=float)
    flat = columns.ndim == 1
    cols = columns[:, None] if flat else columns
    labels = np.asarray(labels, dtype=object)
    keys = None if clusters is None else np.asarray(clusters, dtype=object)
    total = np.zeros((n_boot, cols.shape[1]))
    count = np.zeros((n_boot, 1))
    group_means = {}
    for group in sorted(set(labels.tolist())):
        rows = cols[labels == group]
        if keys is None:
            sums_c, sizes_c = rows, np.ones(rows.shape[0])
        else:
            _, code = np.unique(keys[labels == group], return_inverse=True)
            sizes_c = np.bincount(code).astype(float)
            sums_c = np.stack([np.bincount(code, weights=rows[:, k]) for k in range(rows.shape[1])], axis=1)
        idx = rng.integers(0, sizes_c.size, size=(n_boot, sizes_c.size))
        sums = sums_c[idx].sum(axis=1)
        n = sizes_c[idx].sum(axis=1)[:, None]
        total += sums
        count += n
        group_means[group] = sums[:, 0] / n[:, 0] if flat else sums / n
    overall = total / np.maximum(count, 1) if cols.shape[0] else np.full(total.shape, np.nan)
    return Bootstrap(overall[:, 0] if flat else overall, group_means)
