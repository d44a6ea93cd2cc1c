"""What the CLI's compare, plot and findings commands do, minus click."""

from __future__ import annotations

from typing import Sequence

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS as DEFAULTS
from chainforget.config.ranges import check_number
from chainforget.errors import ConfigError, DataError, did_you_mean
from chainforget.metrics.compute import read_runs
from chainforget.plugins import registries
from chainforget.report.compare import METRICS, check_metrics, compare_runs, load_groups
from chainforget.report.findings import DEFAULT_METRIC, check_metric, findings
from chainforget.report.findings_render import render
from chainforget.report.plots import metric_values, plot_all
from chainforget.report.schemas import COMPARE_SCHEMA
from chainforget.report.tables import Cell, Column, Columns, render_table, strategy_name
from chainforget.store.results import find_runs, load_result


def compare_command(run_sets: Sequence[str], *, baseline: str | None, by: str, metrics: Sequence[str],
                    n_boot: int, seed: int, fmt: str) -> tuple[str, list[str]]:
    check_number("n_boot", n_boot)
    check_number("seed", seed)
    check_metrics(metrics)  # before loading runs: a typo is reported at once
    if by == "strategy":
        paths = [s.partition("=")[2] or s for s in run_sets]
        runs, warnings = find_runs(paths)
        loaded, skipped = read_runs(runs)  # a damaged run is one warning and left out
        warnings += skipped
        groups: dict[str, list[dict]] = {}
        for run in loaded:
            groups.setdefault(strategy_name(run["result"]), []).append(run)
        baseline = baseline or ("naive" if "naive" in groups else next(iter(groups)))
    else:
        groups, warnings = load_groups(run_sets)
        baseline = baseline or next(iter(groups))
    if len(groups) < 2:
        raise ConfigError(f"compare needs at least two run sets, found {len(groups)} ({', '.join(groups)}); "
                          f"give more paths or use --by strategy")
    wanted = tuple(metrics) or METRICS
    headers, rows = compare_runs(groups, baseline, metrics=wanted, n_boot=n_boot, seed=seed)
    shown = {str(row[0]) for row in rows}
    absent = [{"metric": m, "missing": metric_missing_reason(groups, m)} for m in wanted if m not in shown]
    if absent and len(absent) == len(wanted):
        raise DataError("; ".join(f"metric {a['metric']} is missing in every run ({a['missing']})" for a in absent)
                        + "; nothing to compare: choose another --metric (see `chainforget list metrics`)")
    warnings += [f"metric {a['metric']} is missing in every run ({a['missing']}); left out of the table"
                 for a in absent if metrics]  # asked for by name; a default one that no run has is only listed
    columns, rows = compare_columns(headers, rows, baseline)
    return render_table(columns, rows, fmt, extra={"baseline": baseline, "missing_metrics": absent}), warnings


_COMPARE_KEYS = {"metric": ("metric", "label"), "task": ("task", "label"), "chain": ("chain", "label"),
                 "method": ("method", "label"), "seeds": ("seeds", "count"), "value": ("value", "measure"),
                 "pairs": ("pairs", "count"), "diff": ("difference", "measure"), "sig": ("significant", "flag")}


def compare_columns(headers, rows, baseline: str) -> tuple[Columns, list]:
    """compare's headers as stable keyed columns ('diff vs <baseline> [95% CI]' is ``difference``); the baseline's
    own difference cells say why they are empty."""
    columns = []
    for h in headers:
        key, kind = _COMPARE_KEYS.get(str(h).split(" ", 1)[0], (None, "measure"))
        columns.append(Column(str(h), key, kind))
    keys = [c.key for c in columns]
    out = []
    for row in rows:
        row = list(row)
        record = dict(zip(keys, map(str, row)))
        why = ("the baseline itself" if record.get("method") == baseline else
               "a spread is compared by its own value and p, not as a difference (a spread of a difference is not a "
               "difference of spreads)" if record.get("metric") == "biased_forgetting" else None)
        for j, c in enumerate(columns):
            cell = row[j]
            if why and c.kind == "measure" and not str(cell) and getattr(cell, "missing", None) in (None, "no value"):
                row[j] = Cell("", missing=why)
        out.append(row)
    return Columns(columns, COMPARE_SCHEMA), out


def metric_missing_reason(groups: dict, metric: str) -> str:
    """Why ``metric`` has no value in any of these runs: a stored reason, else what the metric needs."""
    for runs in groups.values():
        for run in runs:
            for entry in (run["result"].get("metrics", {}).get(metric) or {}).values():
                if isinstance(entry, dict) and entry.get("missing"):
                    return str(entry["missing"])
    if metric in ("forgetting", "biased_forgetting"):
        return "needs a safety task trained before the last stage"
    if metric == "drift":
        return "needs a safety task that is evaluated but never trained"
    return "no run stores a value for it"


def plot_command(paths: Sequence[str], out: str, metrics: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    known = registries("metrics").names()
    for metric in metrics:
        if metric not in known:
            raise ConfigError(f"cannot plot metric {metric!r}; {did_you_mean(metric, known, cutoff=0.5)}registered "
                              f"metrics: {', '.join(known)} (see `chainforget list metrics`)")
    runs, warnings = find_runs(paths)
    results = [load_result(r) for r in runs]
    files = plot_all(results, out, metrics=tuple(metrics))
    for metric in metrics:
        if not metric_values(results, metric):
            reason = metric_missing_reason({"runs": [{"result": r} for r in results]}, metric)
            warnings.append(f"metric {metric} is missing in every run ({reason}); no figure drawn for it")
    return [str(f) for f in files], warnings


def findings_command(paths: Sequence[str], *, metric: str = DEFAULT_METRIC, baseline: str = "naive",
                     n_boot: int = DEFAULTS["n_boot"], seed: int = DEFAULTS["seed"],
                     min_group_size: int = DEFAULTS["min_group_size"], fmt: str = "text"
                     ) -> tuple[str, list[str]]:
    """The paper's three questions over the runs found under ``paths`` (see ``chainforget.report.findings``)."""
    check_number("n_boot", n_boot)
    check_number("seed", seed)
    check_number("min_group_size", min_group_size)
    check_metric(metric)  # before loading runs
    runs, warnings = find_runs(paths)
    loaded, skipped = read_runs(runs)  # a damaged run is one warning and left out; none left: its one-line error
    return render(findings(loaded, metric=metric, baseline=baseline, n_boot=n_boot, seed=seed,
                           min_group_size=min_group_size), fmt), warnings + skipped
