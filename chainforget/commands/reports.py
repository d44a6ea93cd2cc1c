"""What the CLI's compare, plot and findings commands do, minus click."""

from __future__ import annotations

from typing import Sequence

from chainforget.config.ranges import check_number
from chainforget.errors import ConfigError, did_you_mean
from chainforget.plugins import registries
from chainforget.report.compare import METRICS, check_metrics, compare_runs, load_groups
from chainforget.report.findings import DEFAULT_METRIC, check_metric, findings
from chainforget.report.findings_render import render
from chainforget.report.plots import plot_all
from chainforget.report.tables import render_table, strategy_name
from chainforget.store.results import find_runs, load_result, load_run


def compare_command(run_sets: Sequence[str], *, baseline: str | None, by: str, metrics: Sequence[str],
                    n_boot: int, seed: int, fmt: str) -> tuple[str, list[str]]:
    check_number("n_boot", n_boot)
    check_number("seed", seed)
    check_metrics(metrics)  # before loading runs: a typo is reported at once
    if by == "strategy":
        paths = [s.partition("=")[2] or s for s in run_sets]
        runs, warnings = find_runs(paths)
        groups: dict[str, list[dict]] = {}
        for r in runs:
            run = load_run(r)
            groups.setdefault(strategy_name(run["result"]), []).append(run)
        baseline = baseline or ("naive" if "naive" in groups else next(iter(groups)))
    else:
        groups, warnings = load_groups(run_sets)
        baseline = baseline or next(iter(groups))
    if len(groups) < 2:
        raise ConfigError(f"compare needs at least two run sets, found {len(groups)} ({', '.join(groups)}); "
                          f"give more paths or use --by strategy")
    headers, rows = compare_runs(groups, baseline, metrics=tuple(metrics) or METRICS, n_boot=n_boot, seed=seed)
    return render_table(headers, rows, fmt), warnings


def plot_command(paths: Sequence[str], out: str, metrics: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    known = registries("metrics").names()
    for metric in metrics:
        if metric not in known:
            raise ConfigError(f"cannot plot metric {metric!r}; {did_you_mean(metric, known, cutoff=0.5)}registered "
                              f"metrics: {', '.join(known)} (see `chainforget list metrics`)")
    runs, warnings = find_runs(paths)
    files = plot_all([load_result(r) for r in runs], out, metrics=tuple(metrics))
    return [str(f) for f in files], warnings


def findings_command(paths: Sequence[str], *, metric: str = DEFAULT_METRIC, baseline: str = "naive",
                     n_boot: int = 1000, seed: int = 0, min_group_size: int = 20, fmt: str = "text"
                     ) -> tuple[str, list[str]]:
    """The paper's three questions over the runs found under ``paths`` (see ``chainforget.report.findings``)."""
    check_number("n_boot", n_boot)
    check_number("seed", seed)
    check_number("min_group_size", min_group_size)
    check_metric(metric)  # before loading runs
    runs, warnings = find_runs(paths)
    return render(findings([load_run(r) for r in runs], metric=metric, baseline=baseline, n_boot=n_boot, seed=seed,
                           min_group_size=min_group_size), fmt), warnings
