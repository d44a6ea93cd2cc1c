"""chainforget from Python (a notebook, a script): results as tidy pandas DataFrames, and runs and suites.

Why: researchers analyse in Jupyter with pandas. This is the CLI's engine, not a copy: folders are read and
verified as ``compare`` and ``leaderboard`` read them (``store.results.find_runs``, ``metrics.compute.read_run``),
``leaderboard``/``compare`` return the CLI's own ``--format json`` tables, and ``run``/``run_suite`` call what
``chainforget run`` and ``chainforget leaderboard`` call.

    import chainforget.api as cf

    res = cf.load("runs/")                 # every complete run under the folder
    res.metrics                            # one row per run x task x group x stage x metric
    res.records                            # one row per evaluated example per stage
    cf.leaderboard("runs/")                # the leaderboard, numbers with intervals, p and missing reasons
    cf.run(chain="bbq,gsm8k", strategy="replay", model="tiny", limit_train=8, limit_eval=9, out="runs")

Column reference: docs/api.md. pandas is imported inside functions (``import chainforget.api`` stays light).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from chainforget.errors import ConfigError, DataError
from chainforget.metrics import estimates
from chainforget.metrics.compute import read_run
from chainforget.report.drawing import metric_unit
from chainforget.report.tables import chain_label, strategy_name
from chainforget.store.results import find_runs

SCORE = "score"  # the metric name of score-matrix rows: a task's primary score after a stage
ALL = "all"  # the group of a value over all of a task's examples

METRIC_COLUMNS = ["run_id", "strategy", "chain", "seed", "model", "task", "group", "stage", "stage_label", "metric", "key",
                  "value", "ci_low", "ci_high", "p", "n", "unit", "missing", "label"]
RECORD_COLUMNS = ["run_id", "strategy", "chain", "seed", "model", "stage", "stage_label", "task", "id", "group",
                  "subgroup", "gold", "pred", "correct", "primary", "score"]


@dataclass
class Results:
    """The complete runs found under some paths, as pandas DataFrames (built on first use).

    ``runs``: one row per run. ``metrics``: one row per run x task x group x stage x metric (score-matrix entries
    as ``metric == "score"``, then every stored metric at the last stage), with value, interval, p, n, unit, seed and
    the missing reason. ``records``: the per-example evaluation records, one row per example per stage.
    ``warnings``: incomplete runs skipped. ``raw``: the verified ``{"run_dir", "result", "records"}`` dicts.
    """

    raw: list[dict] = field(repr=False)
    warnings: list[str] = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def runs(self):
        return self._frame("runs", _run_rows, None)

    @property
    def metrics(self):
        return self._frame("metrics", _metric_rows, METRIC_COLUMNS)

    @property
    def records(self):
        return self._frame("records", _record_rows, None)

    def _frame(self, name: str, rows: Callable[[dict], Iterable[dict]], columns: list[str] | None):
        if name not in self._cache:
            import pandas as pd

            data = [row for run in self.raw for row in rows(run)]
            self._cache[name] = pd.DataFrame(data, columns=columns if not data else None)
        return self._cache[name]

    def __len__(self) -> int:
        return len(self.raw)


def load(*paths: str | os.PathLike) -> Results:
    """Every complete run under ``paths`` (run folders, folders of runs at any depth, globs), verified as the CLI
    verifies them; an argument that matches nothing, or a damaged run, is a one-line DataError."""
    if not paths:
        raise ConfigError("load() needs at least one path: a run folder or the --out of a leaderboard")
    dirs, warnings = find_runs([os.fspath(p) for p in paths])
    return Results([read_run(d) for d in dirs], warnings)


def leaderboard(out: str | os.PathLike = "runs", *, suite: str | Mapping | None = None, columns: Sequence[str] = (),
                long: bool = True):
    """The leaderboard of the complete runs under ``out`` (or only ``suite``'s runs), from ``chainforget
    leaderboard --no-run --format json``. ``long``: one row per leaderboard row x measure column, with value, ci_low,
    ci_high, p, n, unit, seeds and missing; else the table as the JSON has it (measures as dicts)."""
    from chainforget.commands.runs import leaderboard_command

    suite_path, cleanup = _suite_file(suite, out)
    try:
        text = leaderboard_command(preset=None, suite_path=suite_path, out=os.fspath(out), shard=None,
                                   launcher="local", no_run=True, sort_key=None, ascending=False, fmt="json",
                                   quiet=True, echo=lambda msg: None, columns=",".join(columns) or None)
    finally:
        cleanup()
    return _table_frame(json.loads(text), long)


def compare(*run_sets: str, by: str = "set", baseline: str | None = None, metrics: Sequence[str] = (),
            n_boot: int = 1000, seed: int = 0, long: bool = True):
    """``chainforget compare ... --format json`` as a DataFrame (``long`` as in :func:`leaderboard`)."""
    from chainforget.commands.reports import compare_command

    text, _warnings = compare_command(run_sets, baseline=baseline, by=by, metrics=metrics, n_boot=n_boot, seed=seed,
                                      fmt="json")
    return _table_frame(json.loads(text), long)


def run(chain: str | Sequence[str], *, strategy: str = "naive", out: str | os.PathLike = "runs",
        config: str | os.PathLike | None = None, sets: Sequence[str] = (), train: Mapping[str, Any] | None = None,
        resume: bool = False, quiet: bool = True, **settings: Any) -> Results:
    """Train one chain as ``chainforget run`` does and return it loaded. ``settings`` are run settings by name
    (``model``, ``seed``, ``limit_train``, ``limit_eval``, ``eval_tasks``, ``task_options``, ``dtype`` ...), ``train``
    the training settings (``{"learning_rate": 1e-4}``), ``sets`` strings as ``--set`` takes them, ``config`` a run
    YAML file (the only way to pass ``metric_options``, as on the command line)."""
    from chainforget.commands.runs import run_command

    chain = chain if isinstance(chain, str) else ",".join(chain)
    result = run_command(chain=chain, strategy=strategy, sets=tuple(sets), train=dict(train or {}),
                         config_path=os.fspath(config) if config else None, out=os.fspath(out), resume=resume, log="",
                         quiet=quiet, echo=(lambda msg: None) if quiet else _stderr, **settings)
    return load(Path(out) / result["run_id"])


def run_suite(suite: str | os.PathLike | Mapping[str, Any], out: str | os.PathLike = "runs", *,
              quiet: bool = True) -> Results:
    """Run a suite (a preset name, a suite YAML file, or the same keys as a dict) into ``out`` as ``chainforget
    leaderboard`` does (finished runs and shared prefixes are reused), and return its runs loaded."""
    from chainforget.benchmark.suite_runner import collect_results
    from chainforget.benchmark.suite_runner import run_suite as execute
    from chainforget.config.suite import check_suite_bounds, resolve_suite

    if isinstance(suite, Mapping):
        spec = dict(suite)
        check_suite_bounds(spec)
    else:
        spec = resolve_suite(os.fspath(suite))
    execute(spec, out, progress=not quiet, echo=(lambda msg: None) if quiet else _stderr)
    found, missing, damaged = collect_results(spec, out)
    if missing or damaged:
        raise DataError(f"the suite left {len(missing)} run(s) incomplete and {len(damaged)} damaged under {out}; "
                        f"rerun it to finish them")
    return load(*[Path(out) / r["run_id"] for r in found])


# -- rows ------------------------------------------------------------------------------------------------------


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _identity(result: dict) -> dict[str, Any]:
    spec = result.get("spec", {})
    return {"run_id": result["run_id"], "strategy": strategy_name(result), "chain": chain_label(result),
            "seed": spec.get("seed"), "model": spec.get("model")}


def _run_rows(run: dict) -> Iterable[dict]:
    result = run["result"]
    spec = result.get("spec", {})
    yield {**_identity(result), "folder": run["run_dir"], "stages": list(result["stages"]),
           "eval_tasks": list(result["eval_tasks"]), "finetune": result.get("train_config", {}).get("finetune"),
           "strategy_params": dict(result.get("resolved_params") or spec.get("strategy_params") or {}),
           "seconds": (result.get("timings") or {}).get("total_seconds")}


def _metric_rows(run: dict) -> Iterable[dict]:
    result = run["result"]
    ident = _identity(result)
    stages, tasks, info = result["stages"], result["eval_tasks"], result["task_info"]
    sizes = result.get("group_sizes") or {}
    last = len(stages) - 1
    view = estimates.RunView(run) if run.get("records") else None
    for t, row in enumerate(result["score_matrix"]):
        for task, value in zip(tasks, row):
            unit = str(info[task].get("unit") or info[task].get("primary_metric") or SCORE)
            entry = {"value": value}
            if t == last and value is not None and view is not None:  # the leaderboard's "final" cell
                est = estimates.final_cell([result], task, unit, {ident["seed"]: view})
                entry.update(ci_low=est.ci_low, ci_high=est.ci_high, n=est.n)
            yield _row(ident, task, ALL, stages[t], t, SCORE, task, entry, unit,
                       n=sum((sizes.get(task) or {}).values()) or None)
            for group, by_stage in sorted(((result.get("group_score_matrix") or {}).get(task) or {}).items()):
                if group == ALL:
                    continue  # a task without demographic groups: its one group is the task-level row above
                yield _row(ident, task, group, stages[t], t, SCORE, f"{task}/{group}", {"value": by_stage[t]}, unit,
                           n=(sizes.get(task) or {}).get(group))
    for metric, per_key in sorted(result["metrics"].items()):
        for key, entry in per_key.items():
            task, group = _task_group(key, tasks)
            unit = entry.get("unit") or metric_unit(metric, info.get(task) if task else None)
            yield _row(ident, task, group, stages[last], last, metric, key, entry, unit)


def _task_group(key: str, tasks: Sequence[str]) -> tuple[str | None, str | None]:
    """A metric key as (task, group): ``"bbq"`` -> (bbq, all), ``"bbq/Age"`` -> (bbq, Age), anything else (a unit
    such as ``acc``, ``overall``) -> (None, None): the value is over tasks; ``key`` keeps the raw key."""
    if key in tasks:
        return key, ALL
    task, _, group = key.partition("/")
    if group and task in tasks:
        return task, group
    return None, None


def _row(ident: dict, task, group, label: str, stage: int, metric: str, key: str, entry: Mapping[str, Any], unit: str,
         n: int | None = None) -> dict:
    """One tidy row: ``value`` is a number or None; a metric whose value is a name (``worst_group``) puts it in
    ``label``; ``missing`` is the stored reason when there is no value."""
    value = entry.get("value")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {**ident, "task": task, "group": group, "stage": stage, "stage_label": label, "metric": metric, "key": key,
            "value": float(value) if numeric else None, "ci_low": entry.get("ci_low"), "ci_high": entry.get("ci_high"),
            "p": entry.get("p"), "n": entry.get("n", n), "unit": unit,
            "missing": entry.get("missing") if value is None else None,
            "label": None if numeric or value is None else str(value)}


def _record_rows(run: dict) -> Iterable[dict]:
    result = run["result"]
    ident = _identity(result)
    stages = result["stages"]
    for rec in run["records"]:
        scores = rec.get("scores") or {}
        yield {**ident, "stage": rec["step"], "stage_label": stages[rec["step"]], "task": rec["task"], "id": rec["id"],
               "group": rec["group"], "subgroup": rec.get("subgroup"), "gold": rec.get("gold"),
               "pred": rec.get("pred"), "correct": rec.get("correct"), "primary": rec.get("primary"),
               "score": scores.get(rec.get("primary")), **scores,
               "option_logliks": rec.get("option_logliks"), "generated": rec.get("generated")}


# -- the CLI's JSON tables -------------------------------------------------------------------------------------


def _table_frame(doc: dict, long: bool):
    import pandas as pd

    columns = doc["columns"]
    if not long:
        return pd.DataFrame(doc["rows"], columns=[c["key"] for c in columns])
    labels = [c["key"] for c in columns if c.get("kind") == "label"]  # counts: each measure has its own seeds
    rows = []
    for row in doc["rows"]:
        for column in columns:
            if column.get("kind") == "measure":
                rows.append({**{k: row.get(k) for k in labels}, "column": column["key"], "title": column["title"],
                             **row[column["key"]]})
    return pd.DataFrame(rows)


def _suite_file(suite, out) -> tuple[str | None, Callable[[], None]]:
    """A suite dict as a temporary YAML file next to ``out`` (what ``leaderboard --suite`` reads)."""
    if suite is None or not isinstance(suite, Mapping):
        return (None if suite is None else os.fspath(suite)), (lambda: None)
    import tempfile

    import yaml

    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    with handle:
        yaml.safe_dump(dict(suite), handle)
    return handle.name, (lambda: os.unlink(handle.name))
