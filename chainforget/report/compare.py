"""``chainforget compare``: methods side by side, each difference to a baseline with its 95% interval.

For every metric, task and chain order, one row per run set (method): its value over its seeds, and its difference
to the baseline set, paired by chain, seed and evaluation example. Every number is an
:class:`~chainforget.metrics.inference.Estimate` of the metrics room (``metrics.estimates``); this module chooses the
runs and formats, nothing else:

- **value**: the stored metric over the seeds (``estimates.stored_cell``: one seed as stored, several combined),
  exactly what the leaderboard and findings show for the same runs; ``final`` is the last-stage score, its interval
  from the records (``estimates.final_cell``).
- **difference** (``forgetting``, ``drift``, ``final``): ``estimates.paired_difference`` from the per-example
  records: the joint cluster covariance of every seed of both methods on their common examples, plus the
  between-seed variance with t(S - 1). ``*`` marks a difference whose interval excludes 0 (``p < 0.05``).
- **biased_forgetting**: the calibrated between-group spread, its interval and the group-effect p in the ``sig``
  column (no difference is formed: a spread of a difference is not a difference of spreads). One seed: the stored
  metric (as the leaderboard shows it) unless the run has none or ``min_group_size`` differs from the run's; else
  recomputed over the seeds (``estimates.spread_cell``).
- any other registered metric (plugins included): stored values; a difference of stored values has an interval
  only with two seeds or more (between-seed variance, t(S - 1)). A metric undefined for a run gets no row.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS as DEFAULTS
from chainforget.errors import ConfigError, did_you_mean
from chainforget.metrics import estimates, inference
from chainforget.metrics import spread as spread_stats
from chainforget.metrics.base import TASK_UNIT
from chainforget.metrics.compute import read_run, read_runs
from chainforget.metrics.estimates import RunView
from chainforget.plugins import registries
from chainforget.report.tables import Cell, chain_label, estimate_cell
from chainforget.store.results import find_runs

METRICS = ("forgetting", "biased_forgetting", "drift", "final")  # differences from records; other names: stored
HEADERS_BASE = ["metric", "task", "chain", "method", "seeds", "value [95% CI]"]


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


def _views(runs: Sequence[Any], label: str) -> dict[tuple[str, Any], RunView]:
    out: dict[tuple[str, Any], RunView] = {}
    for run in runs:
        view = RunView(read_run(run) if isinstance(run, (str, os.PathLike)) else run)
        key = (chain_label(view.result), view.seed)
        if key in out:
            raise ConfigError(
                f"run set {label!r} has two runs for chain {key[0]} and seed {view.seed} "
                f"({out[key].where}, {view.where}); pass one set of runs per method"
            )
        out[key] = view
    return out


def compare_runs(
    groups: dict[str, Sequence[Any]],
    baseline_label: str,
    metrics: Sequence[str] = METRICS,
    n_boot: int = DEFAULTS["n_boot"],
    seed: int = DEFAULTS["seed"],
    min_group_size: int = DEFAULTS["min_group_size"],
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
    chains = list(dict.fromkeys(chain_label(v.result) for v in all_views))
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


def _defined(view: RunView, metric: str, task: str) -> bool:
    if task not in view.result["eval_tasks"]:
        return False
    if metric in METRICS:
        return (metric == "final" or view.kind(task) == "safety") and view.per_example(
            "forgetting" if metric == "biased_forgetting" else metric, task) is not None
    return isinstance(view.entry(metric, task).get("value"), (int, float))


def _unit(view: RunView, metric: str, task: str) -> str:
    """The metric's own unit (a share, a p-value), else the task's score unit."""
    names = registries("metrics").names()
    unit = registries("metrics").get(metric).unit if metric in names else TASK_UNIT
    return unit if unit and unit != TASK_UNIT else view.inputs.unit(task)


def _bounds(metric: str) -> tuple[float | None, float | None]:
    if metric not in registries("metrics").names():
        return None, None
    spec = registries("metrics").get(metric)
    return spec.low, spec.high


def _head(metric, task, chain, label, n) -> list[Cell]:
    return [Cell(metric), Cell(task), Cell(chain), Cell(label), Cell(str(n), n)]


def _value(metric: str, task: str, mine: dict) -> inference.Estimate:
    views = [v for _, v in sorted(mine.items(), key=lambda p: str(p[0]))]
    unit = _unit(views[0], metric, task)
    if metric == "final":
        return estimates.final_cell([v.result for v in views], task, unit, mine)
    return estimates.stored_cell([v.result for v in views], metric, task, _bounds(metric), unit)


def _sig(diff: inference.Estimate) -> Cell:
    significant = diff.p is not None and diff.p < 1.0 - inference.CONFIDENCE
    return Cell("*" if significant else "", p=diff.p, missing=diff.missing)


def _row(metric, task, chain, label, is_base, mine, base, n_boot, seed, digits) -> list[Cell]:
    row = _head(metric, task, chain, label, len(mine)) + [estimate_cell(_value(metric, task, mine), digits)]
    if is_base:
        return row + [Cell(""), Cell(""), Cell("")]
    unit = _unit(next(iter(mine.values())), metric, task)
    diff = estimates.paired_difference(mine, base, metric, task, unit)
    return row + [Cell(str(diff.seeds), diff.seeds), estimate_cell(diff, digits), _sig(diff)]


def _spread_row(metric, task, chain, label, is_base, mine, base, n_boot, seed, digits, min_group_size) -> list[Cell]:
    views = [v for _, v in sorted(mine.items(), key=lambda p: str(p[0]))]
    stored_floor = views[0].result.get("metric_options", {}).get("min_group_size", min_group_size)
    if len(views) == 1 and stored_floor == min_group_size and views[0].entry(metric, task):
        est = estimates.stored_cell([views[0].result], metric, task, _bounds(metric), _unit(views[0], metric, task))
        p = views[0].entry(metric, task).get("p")
    else:
        est = estimates.spread_cell(mine, task, min_group_size, n_boot, seed, _unit(views[0], metric, task))
        p = est.p
    p_text = "" if p is None else f"p={p:.3f}" + (" *" if p < spread_stats.ALPHA else "")
    return _head(metric, task, chain, label, len(mine)) + [estimate_cell(est, digits), Cell(""), Cell(""),
                                                            Cell(p_text, p=p)]


def _stored_row(metric, task, chain, label, is_base, mine, base, n_boot, seed, digits) -> list[Cell]:
    """A registered metric's stored per-run values; the difference per seed, combined over seeds."""
    row = _head(metric, task, chain, label, len(mine)) + [estimate_cell(_value(metric, task, mine), digits)]
    if is_base:
        return row + [Cell(""), Cell(""), Cell("")]
    ordered = sorted(mine.items(), key=lambda p: str(p[0]))
    pairs = [(v, base[s]) for s, v in ordered if s in base and _defined(base[s], metric, task)]
    diffs = [(v.entry(metric, task)["value"] - b.entry(metric, task)["value"], None, None) for v, b in pairs]
    diff = inference.cell(diffs, unit=_unit(ordered[0][1], metric, task),
                          missing="no seed with this metric in both sets")
    return row + [Cell(str(len(pairs)), len(pairs)), estimate_cell(diff, digits), _sig(diff)]


def load_groups(specs: Sequence[str]) -> tuple[dict[str, list[dict]], list[str]]:
    """Run sets from CLI arguments ``label=path-or-glob`` or ``path-or-glob`` (label = the argument text).

    Returns ``({label: [read_run dicts]}, warnings about incomplete or damaged runs left out)``.
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
        groups[label], skipped = read_runs(runs)  # verified; a damaged run is a warning, an unreadable set an error
        warnings += warn + skipped
    return groups, warnings
