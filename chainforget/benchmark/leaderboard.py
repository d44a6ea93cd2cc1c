"""Run a suite (skipping complete runs, resuming interrupted ones, sharing prefixes) and collect its results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from chainforget.benchmark.spec import RunSpec
from chainforget.benchmark.suite import expand_suite, shard_specs


def run_suite(suite: Mapping[str, Any], out_dir: str | Path, *, shard: tuple[int, int] | None = None,
              progress: bool = True, echo: Callable[[str], None] | None = None,
              launcher: str = "local") -> list[RunSpec]:
    """Run this shard's part of the grid; returns the specs it covered. Complete runs cost nothing."""
    from chainforget.benchmark.runner import run

    echo = echo or (lambda msg: None)
    from chainforget.benchmark.runner import metric_options_from, prepare

    specs = shard_specs(expand_suite(suite), shard)
    options = dict(suite.get("metric_options") or {})
    metric_options_from(options)
    for spec in specs:  # every name and setting is checked before hours of training, not when its turn comes
        prepare(spec)
    if launcher == "ray":
        from chainforget.benchmark.ray_launcher import run_on_ray

        run_on_ray(specs, out_dir, metric_options=options, echo=echo)
        return specs
    for i, spec in enumerate(specs, 1):
        echo(f"[{i}/{len(specs)}] {spec.strategy} on {' -> '.join(spec.chain)} (seed {spec.seed})")
        run(spec, out_dir, resume=True, progress=progress, echo=echo, metric_options=options, wait=True)
    return specs


def collect_results(suite: Mapping[str, Any], out_dir: str | Path) -> tuple[list[dict], list[str]]:
    """Results of every run of the suite found complete under ``out_dir`` and the ids still missing."""
    from chainforget.benchmark import results as store
    from chainforget.benchmark.runner import prepare

    found, missing = [], []
    for spec in expand_suite(suite):
        run_dir = Path(out_dir) / prepare(spec).spec.run_id()
        if store.is_complete(run_dir):
            found.append(store.load_result(run_dir))
        else:
            missing.append(run_dir.name)
    return found, missing
