"""``chainforget compare``: methods side by side, each difference to a baseline with a paired bootstrap CI.

Why from the per-example records: a difference between two methods is only meaningful against the noise of the
eval sample and of the seed, and both are only visible example by example. For every metric, task and chain order:

- each method's value is the mean over its runs of the metric computed from the records, with a 95% percentile
  bootstrap CI (resample runs, then eval examples within each demographic group);
- the difference to the baseline pairs runs by chain order and seed; each bootstrap replicate resamples the pairs,
  then within each pair the example ids within each group, *jointly* for both methods (they were evaluated on the
  same examples), and averages the per-pair differences. ``*`` marks a difference whose CI excludes 0.

Every number comes from the metrics room (no formula lives here): the records are turned into per-example views by
``chainforget.metrics.compute.build_inputs``, paired differences by ``metrics.uncertainty.paired_differences`` (with
the lower-is-better sign flip), resamples by ``metrics.uncertainty.bootstrap`` (templates resampled as clusters) and
the spread by ``metrics.spread``. ``forgetting`` (safety tasks trained before the last row), ``drift`` (safety tasks
never trained), ``final`` (every task): example means with the hierarchical bootstrap above. ``biased_forgetting``: the
calibrated between-group spread of the seed-averaged forgetting (between-seed variance included in each group's
variance), its interval, and the group-effect p in the ``sig`` column's place (no difference is formed: a spread of a
difference is not a difference of spreads). Any other registered metric (plugins included): the stored per-run
values, combined over seeds by ``metrics.replicates.combine_seeds``. A metric undefined for a run gets no row.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Sequence

import numpy as np

from chainforget.errors import ConfigError, DataError, did_you_mean
from chainforget.metrics import spread as spread_stats
from chainforget.metrics.compute import build_inputs, read_run
from chainforget.metrics.replicates import combine_seeds, se_from_interval
from chainforget.metrics.uncertainty import bootstrap, paired_differences
from chainforget.plugins import registries
from chainforget.report.tables import Cell, chain_label, format_cell
from chainforget.store.results import find_runs

METRICS = ("forgetting", "biased_forgetting", "drift", "final")  # computed from records; other names: stored values
HEADERS_BASE = ["metric", "task", "chain", "method", "seeds", "value [95% CI]"]


class _RunView:
    """One run's per-example views (the metrics room's), indexed by task."""

    def __init__(self, run: dict):
        if not isinstance(run, dict) or not isinstance(run.get("result"), dict):
            raise ConfigError("compare needs runs loaded with chainforget.store.results.load_run")
        self.result = run["result"]
        self.where = run.get("run_dir") or self.result.get("run_id", "?")
        if not run.get("records"):
            raise DataError(f"{self.where} has no evaluation records; compare needs them: rerun the run to write them")
        self.chain = chain_label(self.result)
        self.seed = self.result.get("spec", {}).get("seed")
        self.inputs = build_inputs(run["records"], self.result["task_info"], self.result["stages"],
                                   self.result.get("eval_tasks"))
        self.last = self.inputs.last

    def kind(self, task: str) -> str | None:
        return self.result.get("task_info", {}).get(task, {}).get("kind")

    def per_example(self, metric: str, task: str):
        """(ids, values, groups, clusters) of the example-level quantity whose mean is ``metric``, or None."""
        if task not in self.inputs.views:
            return None
        view = self.inputs.views[task]
        if metric == "final":
            before = None
        else:
            trained_at = self.inputs.trained_at(task)
            if metric == "drift":
                before = 0 if trained_at is None else None
            else:  # forgetting, biased_forgetting: trained tasks with a later stage
                before = trained_at if trained_at is not None and trained_at < self.last else None
            if before is None:
                return None
        if before is None:
            keep = ~np.isnan(view.values[:, self.last])
            values = view.values[keep, self.last]
        else:
            values, keep = paired_differences(view.values, before, self.last, self.inputs.sign(task))
        if not keep.any():
            return None
        ids = [i for i, k in zip(view.ids, keep) if k]
        groups = [g for g, k in zip(view.groups, keep) if k]
        clusters = None if view.clusters is None else [c for c, k in zip(view.clusters, keep) if k]
        return ids, values, groups, clusters


def _aligned(vectors: list) -> tuple[np.ndarray, list[str], list[str] | None] | None:
    """Per-example values of several runs on their common examples: ``[K, n]``, groups, clusters."""
    common = set.intersection(*(set(v[0]) for v in vectors))
    if not common:
        return None
    first = vectors[0]
    order = [j for j, i in enumerate(first[0]) if i in common]
    ids = [first[0][j] for j in order]
    stacked = []
    for v in vectors:
        where = {i: j for j, i in enumerate(v[0])}
        stacked.append(np.asarray(v[1])[[where[i] for i in ids]])
    groups = [first[2][j] for j in order]
    clusters = None if first[3] is None else [first[3][j] for j in order]
    return np.stack(stacked), groups, clusters


def _unit(vectors: list, rng, n_boot: int):
    """Point means and joint bootstrap replicates ``[K, n_boot]`` of aligned per-example vectors of one run (pair).

    Clusters (templates) are resampled within groups by the metrics room's bootstrap, with the same draw for every
    vector (pairing).
    """
    aligned = _aligned(vectors)
    if aligned is None:
        return None
    values, groups, clusters = aligned
    boot = bootstrap(values.T, groups, n_boot, rng, clusters).overall  # [n_boot, K]
    return list(values.mean(axis=1)), [boot[:, k] for k in range(values.shape[0])]


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


def known_metrics() -> list[str]:
    """What compare can show: the record-based metrics, then every registered metric (plugins included)."""
    return list(dict.fromkeys([*METRICS, *registries("metrics").names()]))


def _check(groups: dict, baseline_label: str, metrics: Sequence[str]) -> None:
    if not groups:
        raise ConfigError("compare needs at least one set of runs")
    if baseline_label not in groups:
        hint = did_you_mean(baseline_label, list(groups), cutoff=0.5)
        raise ConfigError(f"unknown baseline {baseline_label!r}; {hint}sets: {', '.join(groups)}")
    check_metrics(metrics)
    for label, runs in groups.items():
        if not runs:
            raise ConfigError(f"run set {label!r} is empty; pass at least one complete run")


def check_metrics(metrics: Sequence[str]) -> None:
    """Every name is a metric compare can show (one-line error with a suggestion otherwise)."""
    known = known_metrics()
    for m in metrics:
        if m not in known:
            hint = did_you_mean(m, known, cutoff=0.5)
            raise ConfigError(f"compare cannot compute metric {m!r}; {hint}choose from {', '.join(known)} "
                              f"(see `chainforget list metrics`)")


def _views(runs: Sequence[Any], label: str) -> dict[tuple[str, Any], _RunView]:
    out: dict[tuple[str, Any], _RunView] = {}
    for run in runs:
        view = _RunView(read_run(run) if isinstance(run, (str, os.PathLike)) else run)
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
    """Headers and rows comparing each run set (``load_run`` dicts or run directories) with the baseline set.

    ``seeds`` counts the runs of a cell; with one seed its intervals are conditional on that one trained model.
    """
    _check(groups, baseline_label, metrics)
    views = {label: _views(runs, label) for label, runs in groups.items()}
    order = [baseline_label] + [label for label in groups if label != baseline_label]
    headers = HEADERS_BASE + ["pairs", f"diff vs {baseline_label} [95% CI]", "sig"]
    all_views = [v for per in views.values() for v in per.values()]
    chains = list(dict.fromkeys(v.chain for v in all_views))
    tasks = list(dict.fromkeys(t for v in all_views for t in v.result["eval_tasks"]))
    rows: list[list[Cell]] = []
    for metric in metrics:
        for task in tasks:
            for chain in chains:
                base = {k[1]: v for k, v in views[baseline_label].items() if k[0] == chain}
                for label in order:
                    mine = {k[1]: v for k, v in views[label].items() if k[0] == chain}
                    mine = {s: v for s, v in mine.items() if _defined(v, metric, task)}
                    if not mine:
                        continue
                    args = (metric, task, chain, label, label == baseline_label, mine, base, n_boot, seed, digits)
                    rows.append(_spread_row(*args, min_group_size) if metric == "biased_forgetting"
                                else _row(*args) if metric in METRICS else _stored_row(*args))
    return headers, rows


def _defined(view: _RunView, metric: str, task: str) -> bool:
    if task not in view.result["eval_tasks"]:
        return False
    if metric in METRICS:
        return (metric == "final" or view.kind(task) == "safety") and view.per_example(metric, task) is not None
    entry = view.result.get("metrics", {}).get(metric, {}).get(task)
    return isinstance(entry, dict) and isinstance(entry.get("value"), (int, float))


def _head(metric, task, chain, label, n) -> list[Cell]:
    return [Cell(metric), Cell(task), Cell(chain), Cell(label), Cell(str(n), n)]


def _row(metric, task, chain, label, is_base, mine, base, n_boot, seed, digits) -> list[Cell]:
    rng = _rng(seed, metric, task, chain, label)
    units = [_unit([vec], rng, n_boot) for v in mine.values() if (vec := v.per_example(metric, task))]
    units = [u for u in units if u is not None]
    value = None
    if units:
        value = _ci(*_over_units([u[0][0] for u in units], [u[1][0] for u in units], rng, n_boot))
    row = _head(metric, task, chain, label, len(mine)) + [format_cell(value, digits)]
    if is_base:
        return row + [Cell(""), Cell(""), Cell("")]
    diffs = []
    for s, v in sorted(mine.items(), key=lambda p: str(p[0])):
        b = base.get(s)
        if b is None or task not in b.result["eval_tasks"]:
            continue
        vec_m, vec_b = v.per_example(metric, task), b.per_example(metric, task)
        if vec_m and vec_b:
            unit = _unit([vec_m, vec_b], rng, n_boot)
            if unit is not None:
                diffs.append((unit[0][0] - unit[0][1], unit[1][0] - unit[1][1]))
    diff = None
    if diffs:
        diff = _ci(*_over_units([d[0] for d in diffs], [d[1] for d in diffs], rng, n_boot))
    significant = diff is not None and diff[1] is not None and (diff[1] > 0 or diff[2] < 0)
    return row + [Cell(str(len(diffs)), len(diffs)), format_cell(diff, digits), Cell("*" if significant else "")]


def seeds_clustered(vectors: list, min_group_size: int) -> spread_stats.Clustered | None:
    """Several seeds' aligned per-example values collapsed to clusters (metrics.spread), over groups with at least
    ``min_group_size`` examples; None with fewer than two such groups."""
    aligned = _aligned(vectors)
    if aligned is None:
        return None
    values, groups, clusters = aligned
    names, counts = np.unique(np.array(groups, dtype=object), return_counts=True)
    used = set(names[counts >= min_group_size].tolist())
    if len(used) < 2:
        return None
    mask = np.array([g in used for g in groups])
    return spread_stats.collapse(values[:, mask], [g for g, m in zip(groups, mask) if m],
                                 None if clusters is None else [c for c, m in zip(clusters, mask) if m])


def seeds_spread(vectors: list, min_group_size: int, n_perm: int, rng) -> dict | None:
    """The calibrated spread (metrics.spread) of several seeds' aligned per-example forgetting, over groups with at
    least ``min_group_size`` examples; None with fewer than two such groups."""
    cl = seeds_clustered(vectors, min_group_size)
    return None if cl is None else spread_stats.spread(cl, n_perm, rng)


def _spread_row(metric, task, chain, label, is_base, mine, base, n_boot, seed, digits, min_group_size) -> list[Cell]:
    vectors = [vec for _, v in sorted(mine.items(), key=lambda p: str(p[0])) if (vec := v.per_example(metric, task))]
    result = seeds_spread(vectors, min_group_size, n_boot, _rng(seed, metric, task, chain, label))
    value = None if result is None else (result["value"], result["ci_low"], result["ci_high"])
    p_text = "" if result is None else f"p={result['p']:.3f}" + (" *" if result["p"] < spread_stats.ALPHA else "")
    return _head(metric, task, chain, label, len(mine)) + [format_cell(value, digits), Cell(""), Cell(""),
                                                            Cell(p_text)]


def _stored_row(metric, task, chain, label, is_base, mine, base, n_boot, seed, digits) -> list[Cell]:
    """A registered metric's stored per-run values: one seed as stored, several combined by combine_seeds."""
    spec = registries("metrics").get(metric)
    bounds = (spec.low, spec.high)

    def entry(view):
        e = view.result["metrics"][metric][task]
        return e["value"], e.get("ci_low"), e.get("ci_high")

    def combine(entries):
        if len(entries) == 1:
            return entries[0]
        return combine_seeds([e[0] for e in entries], [se_from_interval(e[1], e[2]) for e in entries], bounds)[:3]

    ordered = sorted(mine.items(), key=lambda p: str(p[0]))
    row = _head(metric, task, chain, label, len(mine)) + [format_cell(combine([entry(v) for _, v in ordered]),
                                                                      digits)]
    if is_base:
        return row + [Cell(""), Cell(""), Cell("")]
    pairs = [(entry(v), entry(base[s])) for s, v in ordered if s in base and _defined(base[s], metric, task)]
    diff = None
    if len(pairs) >= 2:
        diff = combine_seeds([m[0] - b[0] for m, b in pairs], [None] * len(pairs))[:3]
    elif pairs:
        diff = (pairs[0][0][0] - pairs[0][1][0], None, None)  # one seed: no interval for a stored difference
    significant = diff is not None and diff[1] is not None and (diff[1] > 0 or diff[2] < 0)
    return row + [Cell(str(len(pairs)), len(pairs)), format_cell(diff, digits), Cell("*" if significant else "")]


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
        groups[label] = [read_run(r) for r in runs]  # verified: records agree with result.json
    return groups, warnings
