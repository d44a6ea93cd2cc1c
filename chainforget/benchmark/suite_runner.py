"""Run a suite (skipping complete runs, resuming interrupted ones, sharing prefixes) and collect its results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from chainforget.benchmark.plan import resolve_run
from chainforget.config.metric_options import metric_options_from
from chainforget.config.spec import RunSpec
from chainforget.config.suite import expand_suite, shard_specs
from chainforget.plugins import registries
from chainforget.store import results as store


def run_suite(suite: Mapping[str, Any], out_dir: str | Path, *, shard: tuple[int, int] | None = None,
              progress: bool = True, echo: Callable[[str], None] | None = None,
              launcher: str = "local") -> list[RunSpec]:
    """Run this shard's part of the grid through a registered launcher; returns the specs it covered.

    Every name and setting is checked before hours of training, not when its turn comes; complete runs cost nothing.
    """
    echo = echo or (lambda msg: None)
    chosen = registries("launchers").get(launcher)
    chosen.check()
    specs = shard_specs(expand_suite(suite), shard)
    options = dict(suite.get("metric_options") or {})
    metric_options_from(options)
    for spec in specs:
        resolve_run(spec)
    chosen.launch(specs, out_dir, metric_options=options, progress=progress, echo=echo)
    return specs


def collect_results(suite: Mapping[str, Any], out_dir: str | Path) -> tuple[list[dict], list[str]]:
    """Results of every run of the suite found complete under ``out_dir`` and the ids still missing."""
    found, missing = [], []
    for spec in expand_suite(suite):
        run_dir = Path(out_dir) / resolve_run(spec).spec.run_id()
        if store.is_complete(run_dir):
            found.append(store.load_result(run_dir))
        else:
            missing.append(run_dir.name)
    return found, missing
