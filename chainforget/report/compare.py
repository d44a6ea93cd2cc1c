"""``chainforget compare``: methods side by side, each difference to a baseline with a paired bootstrap CI.

Why from the per-example records: a difference between two methods is only meaningful against the noise of the
eval sample and of the seed, and both are only visible example by example. For every metric, task and chain order:

- each method's value is the mean over its runs of the metric computed from the records, with a 95% percentile
  bootstrap CI (resample runs, then eval examples within each demographic group);
- the difference to the baseline pairs runs by chain order and seed; each bootstrap replicate resamples the pairs,
  then within each pair the example ids within each group, *jointly* for both methods (they were evaluated on the
  same examples), and averages the per-pair differences. ``*`` marks a difference whose CI excludes 0.

Metrics (signs as in docs/metrics.md; ``last`` = the final score-matrix row, ``a`` = ``task_info[task].trained_at``):
``forgetting`` (safety tasks trained before the last row) = mean R[a] - mean R[last]; ``biased_forgetting`` (same
tasks) = max over groups - min over groups of that forgetting, over groups with at least ``min_group_size``
examples; ``drift`` (safety tasks never trained in the chain) = R[0] - R[last]; ``final`` (every task) = mean score
in the last row. A metric undefined for a run (e.g. forgetting of the chain's last task) gets no row. Scores are each record's
``scores[primary]``; forgetting flips sign for a task whose primary metric is lower-is-better.
"""

from __future__ import annotations

import difflib
import os
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from chainforget.store.results import find_runs, load_run
from chainforget.errors import ConfigError, DataError
from chainforget.report.tables import Cell, chain_label, format_cell

METRICS = ("forgetting", "biased_forgetting", "drift", "final")
HEADERS_BASE = ["metric", "task", "chain", "method", "runs", "value [95% CI]"]


class _RunView:
    """Per-example primary scores of one run, indexed by task and score-matrix row."""

    def __init__(self, run: dict):
        if not isinstance(run, dict) or not isinstance(run.get("result"), dict):
            raise ConfigError("compare needs runs loaded with chainforget.store.results.load_run")
        self.result = run["result"]
        self.where = run.get("run_dir") or self.result.get("run_id", "?")
        if not run.get("records"):
            raise DataError(f"{self.where} has no evaluation records; compare needs them: rerun the run to write them")
        self.chain = chain_label(self.result)
        self.seed = self.result.get("spec", {}).get("seed")
        self.last = len(self.result["stages"]) - 1
        info = self.result.get("task_info", {})
        self.scores: dict[tuple[str, int], dict[str, float]] = {}
        self.groups: dict[str, dict[str, str]] = {}
        for rec in run["records"]:
            task = rec["task"]
            primary = rec.get("primary") or info.get(task, {}).get("primary_metric")
            score = (rec.get("scores") or {}).get(primary, rec.get("correct"))
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score):
                continue
            self.scores.setdefault((task, rec["step"]), {})[rec["id"]] = float(score)
            self.groups.setdefault(task, {})[rec["id"]] = rec.get("group") or "all"

    def kind(self, task: str) -> str | None:
        return self.result.get("task_info", {}).get(task, {}).get("kind")

    def per_example(self, metric: str, task: str) -> dict[str, float] | None:
        """id -> the example's contribution to ``metric`` (forgetting difference or final score)."""
        last = self.scores.get((task, self.last))
        if last is None:
            return None
        if metric == "final":
            return last
        info = self.result.get("task_info", {}).get(task, {})
        trained_at = info.get("trained_at")
        if metric == "drift":
            trained_at = 0 if trained_at is None else None
        elif trained_at is not None and trained_at >= self.last:
            trained_at = None  # no later stage: nothing to forget yet (as in chainforget.metrics)
        start = None if trained_at is None else self.scores.get((task, trained_at))
        if start is None:
            return None
        sign = 1.0 if info.get("higher_is_better", True) else -1.0
        return {i: sign * (start[i] - last[i]) for i in start.keys() & last.keys()}


def _aggregator(metric: str, min_group_size: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(group means [..., G], group sizes [G]) -> metric [...]: the example mean, or the range over big groups."""
    if metric != "biased_forgetting":
        return lambda means, sizes: means @ sizes / sizes.sum()

    def spread(means: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        keep = sizes >= min_group_size
        if keep.sum() < 2:
            return np.full(means.shape[:-1], np.nan)
        return means[..., keep].max(-1) - means[..., keep].min(-1)

    return spread


def _unit(vectors: list[dict[str, float]], groups: dict[str, str], agg, rng, n_boot: int):
    """Point values and bootstrap replicates [n_boot] of ``agg`` for aligned per-example vectors of one unit.

    Example ids are resampled within each group, with the same draw for every vector (pairing).
    """
    ids = sorted(set.intersection(*(set(v) for v in vectors)))
    if not ids:
        return None
    by_group: dict[str, list[str]] = {}
    for i in ids:
        by_group.setdefault(groups.get(i, "all"), []).append(i)
    names = sorted(by_group)
    sizes = np.array([len(by_group[g]) for g in names], dtype=float)
    points, reps = [], []
    draws = [rng.integers(0, len(by_group[g]), size=(n_boot, len(by_group[g]))) for g in names]
    for v in vectors:
        arrays = [np.array([v[i] for i in by_group[g]]) for g in names]
        full = np.array([a.mean() for a in arrays])
        boot = np.stack([a[d].mean(axis=1) for a, d in zip(arrays, draws)], axis=-1)
        points.append(float(agg(full, sizes)))
        reps.append(agg(boot, sizes))
    return points, reps


def _over_units(points: list[float], reps: list[np.ndarray], rng, n_boot: int):
    """Mean over units and its hierarchical replicates (units resampled with replacement)."""
    pts, mat = np.array(points), np.stack(reps)  # [K], [K, n_boot]
    k = len(pts)
    pick = rng.integers(0, k, size=(n_boot, k)) if k > 1 else np.zeros((n_boot, 1), dtype=int)
    boot = mat[pick, np.arange(n_boot)[:, None]].mean(axis=1)
    return float(pts.mean()), boot


def _ci(point: float, boot: np.ndarray) -> tuple[float, float | None, float | None] | None:
    if not np.isfinite(point):
        return None
    if not np.all(np.isfinite(boot)):
        return point, None, None
    low, high = np.percentile(boot, [2.5, 97.5])
    return point, float(low), float(high)


def _rng(seed: int, *key: Any) -> np.random.Generator:
    """A generator per table cell, so a cell's CI does not depend on which other cells were computed."""
    return np.random.default_rng([int(seed), zlib.crc32("\x1f".join(map(str, key)).encode())])


def _check(groups: dict, baseline_label: str, metrics: Sequence[str]) -> None:
    if not groups:
        raise ConfigError("compare needs at least one set of runs")
    if baseline_label not in groups:
        close = difflib.get_close_matches(str(baseline_label), list(groups), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown baseline {baseline_label!r}; {hint}sets: {', '.join(groups)}")
    for m in metrics:
        if m not in METRICS:
            close = difflib.get_close_matches(str(m), METRICS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"compare cannot compute metric {m!r}; {hint}choose from {', '.join(METRICS)}")
    for label, runs in groups.items():
        if not runs:
            raise ConfigError(f"run set {label!r} is empty; pass at least one complete run")


def _views(runs: Sequence[Any], label: str) -> dict[tuple[str, Any], _RunView]:
    out: dict[tuple[str, Any], _RunView] = {}
    for run in runs:
        view = _RunView(load_run(run) if isinstance(run, (str, os.PathLike)) else run)
        key = (view.chain, view.seed)
        if key in out:
            raise ConfigError(
                f"run set {label!r} has two runs for chain {view.chain} and seed {view.seed} "
                f"({out[key].where}, {view.where}); pass one set of runs per method"
            )
        out[key] = view
    return out


def compare_runs(
    groups: dict[str, Sequence[Any]],
    baseline_label: str,
    metrics: Sequence[str] = METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    min_group_size: int = 20,
    digits: int = 3,
) -> tuple[list[str], list[list[Cell]]]:
    """Headers and rows comparing each run set (``load_run`` dicts or run directories) with the baseline set."""
    _check(groups, baseline_label, metrics)
    views = {label: _views(runs, label) for label, runs in groups.items()}
    order = [baseline_label] + [label for label in groups if label != baseline_label]
    headers = HEADERS_BASE + ["pairs", f"diff vs {baseline_label} [95% CI]", "sig"]
    all_views = [v for per in views.values() for v in per.values()]
    chains = list(dict.fromkeys(v.chain for v in all_views))
    tasks = list(dict.fromkeys(t for v in all_views for t in v.result["eval_tasks"]))
    rows: list[list[Cell]] = []
    for metric in metrics:
        agg = _aggregator(metric, min_group_size)
        for task in tasks:
            for chain in chains:
                base = {k[1]: v for k, v in views[baseline_label].items() if k[0] == chain}
                for label in order:
                    mine = {k[1]: v for k, v in views[label].items() if k[0] == chain}
                    mine = {s: v for s, v in mine.items() if task in v.result["eval_tasks"]
                            and (metric == "final" or v.kind(task) == "safety")
                            and v.per_example(metric, task) is not None}
                    if not mine:
                        continue
                    row = _row(metric, task, chain, label, label == baseline_label, mine, base, agg,
                               n_boot, seed, digits)
                    rows.append(row)
    return headers, rows


def _row(metric, task, chain, label, is_base, mine, base, agg, n_boot, seed, digits) -> list[Cell]:
    rng = _rng(seed, metric, task, chain, label)
    units = [_unit([vec], v.groups.get(task, {}), agg, rng, n_boot)
             for v in mine.values() if (vec := v.per_example(metric, task))]
    units = [u for u in units if u is not None]
    value = None
    if units:
        point, boot = _over_units([u[0][0] for u in units], [u[1][0] for u in units], rng, n_boot)
        value = _ci(point, boot)
        if metric == "biased_forgetting" and value is not None and value[1] is not None:
            from chainforget.metrics.groups import bias_corrected_range_ci

            value = (point, *bias_corrected_range_ci(boot, point)[:2])  # as in result.json (docs/metrics.md)
    row = [Cell(metric), Cell(task), Cell(chain), Cell(label), Cell(str(len(mine)), len(mine)),
           format_cell(value, digits)]
    if is_base:
        return row + [Cell(""), Cell(""), Cell("")]
    diffs = []
    for s, v in sorted(mine.items(), key=lambda p: str(p[0])):
        b = base.get(s)
        if b is None or task not in b.result["eval_tasks"]:
            continue
        vec_m, vec_b = v.per_example(metric, task), b.per_example(metric, task)
        if vec_m and vec_b:
            unit = _unit([vec_m, vec_b], v.groups.get(task, {}), agg, rng, n_boot)
            if unit is not None:
                diffs.append((unit[0][0] - unit[0][1], unit[1][0] - unit[1][1]))
    diff = None
    if diffs:
        diff = _ci(*_over_units([d[0] for d in diffs], [d[1] for d in diffs], rng, n_boot))
    significant = diff is not None and diff[1] is not None and (diff[1] > 0 or diff[2] < 0)
    return row + [Cell(str(len(diffs)), len(diffs)), format_cell(diff, digits), Cell("*" if significant else "")]


def load_groups(specs: Sequence[str]) -> tuple[dict[str, list[dict]], list[str]]:
    """Run sets from CLI arguments ``label=path-or-glob`` or ``path-or-glob`` (label = the argument text).

    Returns ``({label: [load_run dicts]}, warnings about incomplete runs skipped)``.
    """
    groups: dict[str, list[dict]] = {}
    warnings: list[str] = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            label, path = spec.rstrip("/\\"), spec
        if label in groups:
            raise ConfigError(f"run set {label!r} is given twice; name them with label=path")
        runs, warn = find_runs([path])
        warnings += warn
        groups[label] = [load_run(r) for r in runs]
    return groups, warnings
