"""Run a suite (skipping complete runs, resuming interrupted ones, sharing prefixes) and collect its results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from chainforget.benchmark.plan import resolve_run
from chainforget.config.metric_options import metric_options_from
from chainforget.config.spec import RunSpec
from chainforget.config.suite import expand_suite, shard_specs
from chainforget.errors import DataError
from chainforget.metrics.compute import read_run
from chainforget.plugins import registries
from chainforget.store import results as store
from chainforget.tasks.resolve import TASK_FILE_SUFFIXES, resolve_task


def task_name(entry: str) -> str:
    """A chain entry's task name: a task file's own ``name``, else the entry (a registered task)."""
    return resolve_task(entry).name if entry.lower().endswith(TASK_FILE_SUFFIXES) else entry


def suite_specs(suite: Mapping[str, Any], shard: tuple[int, int] | None = None) -> list[RunSpec]:
    """This shard's runs of the suite's grid (every run without a shard), task files named by their tasks."""
    return shard_specs(expand_suite(suite, task_name), shard)


def run_suite(suite: Mapping[str, Any], out_dir: str | Path, *, shard: tuple[int, int] | None = None,
              progress: bool = True, echo: Callable[[str], None] | None = None,
              launcher: str = "local", warn: Callable[[str], None] | None = None) -> list[RunSpec]:
    """Run this shard's part of the grid through a registered launcher; returns the specs it covered.

    Every name and setting is checked before hours of training, not when its turn comes; complete runs cost nothing.
    A complete run whose files are damaged is reported through ``warn`` and skipped: the others go on.
    """
    echo = echo or (lambda msg: None)
    warn = warn or echo
    chosen = registries("launchers").get(launcher)
    chosen.check()
    specs = suite_specs(suite, shard)
    options = dict(suite.get("metric_options") or {})
    metric_options_from(options)
    launch = []
    for spec in specs:
        run_dir = Path(out_dir) / resolve_run(spec).spec.run_id()
        problem = store.run_damage(run_dir) if store.is_complete(run_dir) else None
        if problem is None:
            launch.append(spec)
        else:
            warn(f"damaged run skipped: {problem}")
    chosen.launch(launch, out_dir, metric_options=options, progress=progress, echo=echo)
    return specs


def collect_results(suite: Mapping[str, Any], out_dir: str | Path, with_records: bool = False
                    ) -> tuple[list[dict], list[str], list[str]]:
    """Results of every run of the suite found complete under ``out_dir`` (``with_records``: the verified run dicts,
    records included, as compare reads them), the ids still missing, and one line per complete run that is damaged
    (reported, not fatal: one bad file must not hide the other results)."""
    found, missing, damaged = [], [], []
    for spec in suite_specs(suite):
        run_dir = Path(out_dir) / resolve_run(spec).spec.run_id()
        if not store.is_complete(run_dir):
            missing.append(run_dir.name)
            continue
        try:
            run = read_run(run_dir)  # verified: records agree with result.json
            found.append(run if with_records else run["result"])
        except DataError as exc:
            if "written by schema version" in str(exc):
                raise  # another chainforget's results: the whole table would be wrong, not one run
            damaged.append(str(exc))
    return found, missing, damaged
