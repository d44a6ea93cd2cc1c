"""The one entry point that turns evaluation records into result.json's matrices and metrics.

The runner calls :func:`compute_all` at the end of a run and ``chainforget metrics RUN_DIR`` calls
:func:`recompute_run` on the files on disk; both go through the same pure function, so the numbers are identical.
Reading goes through ``store.results`` only (the one reader of a run directory); :func:`read_run` adds the check
that the records still give result.json's matrices.
Every metric in the ``metrics`` registry is computed, so third-party metric plugins appear in results too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from chainforget.config.metric_options import metric_options_from
from chainforget.errors import DataError, PluginError
from chainforget.metrics.base import DEFAULT_OPTIONS, MetricInputs
from chainforget.metrics.matrices import build_views, group_matrix_from_views, group_sizes_from_views, matrix_from_views
from chainforget.store.results import REDO, load_run


def _clean(value: Any) -> Any:
    """Plain JSON values: Python floats/ints/str, None for NaN or infinity, dicts with string keys."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy scalar
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return [_clean(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    raise TypeError(f"cannot store {type(value).__name__} in result.json")


def build_inputs(records: Sequence[Mapping[str, Any]], task_info: Mapping[str, Mapping[str, Any]],
                 stages: Sequence[str], eval_tasks: Sequence[str] | None = None) -> MetricInputs:
    """Validate the run layout and build the matrices once."""
    records = list(records)
    if not stages:
        raise DataError("a run needs at least one stage (the base model); result.json 'stages' is empty")
    seen = {r.get("task") for r in records}
    unknown = sorted(str(t) for t in seen - set(task_info))
    if unknown:
        raise DataError(f"records mention task(s) {', '.join(unknown)} that task_info does not describe; "
                        f"add them to result.json 'task_info'")
    if eval_tasks is None:
        eval_tasks = [t for t in task_info if t in seen]
    eval_tasks = tuple(eval_tasks)
    n_stages = len(stages)
    for task in eval_tasks:
        a = task_info.get(task, {}).get("trained_at")
        if a is not None and not 1 <= int(a) < n_stages:
            raise DataError(f"task {task!r} is trained_at row {a}, outside rows 1..{n_stages - 1} of this run; "
                            f"fix result.json 'task_info'")
    primary = {t: info.get("primary_metric") for t, info in task_info.items() if info.get("primary_metric")}
    cluster_fields = {t: info.get("cluster") for t, info in task_info.items() if info.get("cluster")}
    views = build_views(records, eval_tasks, n_stages, primary, cluster_fields)
    return MetricInputs(records=records, task_info=task_info, stages=tuple(stages), eval_tasks=eval_tasks,
                        views=views, score_matrix=matrix_from_views(views, eval_tasks, n_stages),
                        group_score_matrix=group_matrix_from_views(views), group_sizes=group_sizes_from_views(views))


def compute_all(records: Iterable[Mapping[str, Any]], task_info: Mapping[str, Mapping[str, Any]],
                stages: Sequence[str], *, eval_tasks: Sequence[str] | None = None,
                min_group_size: int = DEFAULT_OPTIONS["min_group_size"],
                n_boot: int = DEFAULT_OPTIONS["n_boot"], seed: int = DEFAULT_OPTIONS["seed"],
                metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """``{"score_matrix", "group_score_matrix", "group_sizes", "metrics"}`` as stored in result.json.

    ``eval_tasks`` (the score-matrix columns) defaults to the task_info tasks that have records, in task_info order.
    ``metrics`` restricts the computation to some registered names (default: every registered metric).
    Deterministic: the same inputs give the same output byte for byte after ``json.dumps(sort_keys=True)``.
    """
    from chainforget.plugins import registries

    if int(min_group_size) < 1 or int(n_boot) < 1:
        raise DataError(f"min_group_size and n_boot must be at least 1, got {min_group_size} and {n_boot}")
    inputs = build_inputs(list(records), task_info, stages, eval_tasks)
    options = {**DEFAULT_OPTIONS, "min_group_size": int(min_group_size), "n_boot": int(n_boot), "seed": int(seed)}
    registry = registries("metrics")
    names = registry.names() if metrics is None else list(metrics)
    results = {}
    for name in names:
        entry = registry.entry(name)
        try:
            results[name] = entry.obj.compute(inputs, options)
        except DataError:
            raise
        except Exception as exc:
            raise PluginError(f"metric {name!r} (from {entry.source}) failed: {type(exc).__name__}: {exc}; "
                              f"fix or uninstall that metric plugin") from exc
    out = {"score_matrix": inputs.score_matrix, "group_score_matrix": inputs.group_score_matrix,
           "group_sizes": inputs.group_sizes, "metrics": results}
    return _clean(out)


def recompute_run(run_dir: str | Path) -> dict[str, Any]:
    """Recompute the matrices and metrics of a finished run from its records, without a model.

    Read through the one reader of a run (``store.results.load_run``): the marker's checksums, the run's identity,
    the schema, the reader's bounds and every record field are checked before a number is computed.
    """
    run = load_run(run_dir)
    result = run["result"]
    options = {k: v for k, v in (result.get("metric_options") or {}).items() if k in DEFAULT_OPTIONS}
    metric_options_from(options)  # a stored n_boot of 10**12 is refused, not attempted
    return compute_all(run["records"], result["task_info"], result["stages"], eval_tasks=result.get("eval_tasks"),
                       **options)


_MATRICES = ("score_matrix", "group_score_matrix", "group_sizes")


def _first_difference(stored: Any, recomputed: Any, where: str) -> str | None:
    """Where two JSON values differ (numbers within 1e-9), e.g. "score_matrix[1][0]: 0.5 vs 0.25"; None if equal."""
    if isinstance(stored, dict) and isinstance(recomputed, dict):
        for key in sorted(set(stored) | set(recomputed), key=str):
            found = _first_difference(stored.get(key), recomputed.get(key), f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(recomputed, list) and len(stored) == len(recomputed):
        for i, (a, b) in enumerate(zip(stored, recomputed)):
            found = _first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (stored, recomputed))
    if numbers and math.isclose(stored, recomputed, rel_tol=0, abs_tol=1e-9):
        return None
    return None if stored == recomputed else f"{where}: result.json {stored!r} vs records {recomputed!r}"


def records_disagreement(result: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str | None:
    """None when the records give result.json's score matrices and group sizes, else the first difference."""
    inputs = build_inputs(records, result["task_info"], result["stages"], result.get("eval_tasks"))
    recomputed = _clean({"score_matrix": inputs.score_matrix, "group_score_matrix": inputs.group_score_matrix,
                         "group_sizes": inputs.group_sizes})
    for key in _MATRICES:
        found = _first_difference(result.get(key), recomputed[key], key)
        if found:
            return found
    return None


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """One verified run for leaderboard, compare and findings alike: ``store.results.load_run`` (checksums,
    identity, bounds, typed records), then the records must give result.json's score matrices.

    So the three commands read the same stored truth: a records file edited with its DONE marker recomputed is
    refused here with one line (a leaderboard warns and leaves the run out), never shown by one command and hidden
    by another.
    """
    run = load_run(run_dir)
    problem = records_disagreement(run["result"], run["records"])
    if problem is not None:
        raise DataError(f"{run_dir}: its records disagree with its result.json ({problem}); one of them was edited "
                        f"after the run: {REDO}")
    return run


def read_runs(run_dirs: Iterable[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """``read_run`` of each directory, for compare and findings: a damaged run is one warning and left out, so the
    table goes on with the others (as a leaderboard does). When none is left the first damage is the error, one
    line; results of another schema version stop everything (the whole table would be wrong, not one run)."""
    runs: list[dict[str, Any]] = []
    warnings: list[str] = []
    first: DataError | None = None
    for run_dir in run_dirs:
        try:
            runs.append(read_run(run_dir))
        except DataError as exc:
            if "written by schema version" in str(exc):
                raise
            first = first or exc
            warnings.append(f"damaged run left out: {exc}")
    if not runs and first is not None:
        raise first
    return runs, warnings

