"""What the CLI's compare and plot commands do, minus click."""

from __future__ import annotations

from typing import Sequence

from chainforget.config.ranges import check_number
from chainforget.errors import ConfigError
from chainforget.report.compare import METRICS, compare_runs, load_groups
from chainforget.report.plots import plot_all
from chainforget.report.tables import render_table, strategy_name
from chainforget.store.results import find_runs, load_result, load_run


def compare_command(run_sets: Sequence[str], *, baseline: str | None, by: str, metrics: Sequence[str],
                    n_boot: int, seed: int, fmt: str) -> tuple[str, list[str]]:
    check_number("n_boot", n_boot)
    check_number("seed", seed)
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


def plot_command(paths: Sequence[str], out: str) -> tuple[list[str], list[str]]:
    runs, warnings = find_runs(paths)
    files = plot_all([load_result(r) for r in runs], out)
    return [str(f) for f in files], warnings
