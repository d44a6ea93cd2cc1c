"""Run one chain with one strategy: train stage by stage, evaluate after each, store records and result.json.

The flow (see docs/contracts.md): resolve the spec (tasks, strategy hyper-parameters, training config) -> build the
Avalanche benchmark -> evaluate the base model (row 0) -> for every stage: load its weights from the prefix store if
an identical prefix was trained before, else train it through the causal-LM template and evaluate on the whole test
stream -> compute every metric from the stored records -> write ``result.json`` and the ``DONE`` marker last.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from filelock import FileLock, Timeout

from chainforget.benchmark.plan import ResolvedRun, Stage, resolve_run, task_info_for
from chainforget.benchmark.stage_runner import StageRunner
from chainforget.config.metric_options import metric_options_from
from chainforget.config.spec import RunSpec
from chainforget.engine.distributed import Ranks
from chainforget.engine.memory import check_run_fits
from chainforget.errors import ChainforgetError, ConfigError, DataError
from chainforget.metrics.compute import compute_all
from chainforget.store import results as store
from chainforget.store.atomic import atomic_write_json, remove_stale_temps
from chainforget.store.layout import CHECKPOINTS_DIR, RECORDS_DIR, RunLayout
from chainforget.store.prefix import PrefixStore
from chainforget.store.provenance import provenance

Echo = Callable[[str], None]


def run(spec: RunSpec, out_dir: str | Path = "runs", *, resume: bool = False, progress: bool = True,
        echo: Echo | None = None, metric_options: Mapping[str, Any] | None = None,
        loggers: tuple[str, ...] = (), wait: bool = False) -> dict[str, Any]:
    """Run (or finish, or just read) one run; returns its result dict.

    ``wait``: if another process holds this run's lock, wait for it (leaderboards) instead of failing (``run``).
    """


    echo = echo or (lambda msg: None)
    metric_options = metric_options_from(metric_options)
    resolved = resolve_run(spec)
    ranks = Ranks.current()  # under `accelerate launch`: rank 0 owns locks, decisions and files; all ranks train
    if not ranks.is_main:
        echo, progress, loggers = (lambda msg: None), False, ()
    run_id = resolved.spec.run_id()
    run_dir = Path(out_dir) / run_id
    layout = RunLayout(run_dir)
    held: list[Any] = []

    def claim():
        """Main process: the result of a complete run (verified; no lock, so a read-only --out works), else lock the
        run and return its result if it became complete meanwhile, else None (stale temp files cleared)."""
        if store.is_complete(run_dir):
            try:
                result = store.load_result(run_dir)
            except store.RunIdentityError:
                raise  # another run's files under this id: never reused, never written into
            except DataError:
                pass  # perhaps being rewritten: decide under the lock
            else:
                check_same_data(result, resolved, run_dir)
                return result
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = FileLock(str(layout.lock), timeout=-1 if wait else 0)
            if wait and lock.is_locked:
                echo(f"{run_id}: another process is computing it; waiting")
            lock.acquire()
        except Timeout:
            raise ConfigError(f"run {run_id} is being computed by another process (lock {layout.lock}); "
                              f"wait for it to finish or pass a different --out") from None
        held.append(lock)
        if store.is_complete(run_dir):
            result = store.load_result(run_dir)
            check_same_data(result, resolved, run_dir)
            return result
        remove_stale_temps(run_dir)  # left by a killed predecessor; we hold the run's lock
        return None

    created, refused = not run_dir.exists(), False
    try:
        done = ranks.on_main(claim)
        if done is not None:
            echo(f"{run_id}: complete, nothing to do")
            return done
        return _execute(resolved, run_dir, resume=resume, progress=progress, echo=echo,
                        metric_options=dict(metric_options or {}), loggers=loggers, ranks=ranks)
    except (ChainforgetError, OSError):
        refused = True
        raise
    finally:
        for lock in held:
            lock.release()
        if refused and created and ranks.is_main:  # refused before its first evaluation: leave no folder behind
            store.remove_unstarted_run(run_dir)


def _execute(resolved: ResolvedRun, run_dir: Path, *, resume: bool, progress: bool, echo: Echo,
             metric_options: dict[str, Any], loggers: tuple[str, ...], ranks) -> dict[str, Any]:

    spec = resolved.spec
    check_run_fits(resolved.model_spec, resolved.train_cfg, spec.dtype)  # before any weights are loaded
    if ranks.is_main:
        atomic_write_json(RunLayout(run_dir).spec, spec.to_dict())
    t_start = time.time()
    stage_runner = StageRunner(resolved, run_dir, PrefixStore(run_dir.parent), progress=progress, echo=echo, loggers=loggers,
                     ranks=ranks)
    prepared = stage_runner.prepared
    stages = prepared.stages

    records = {0: stage_runner.base_records(prepared.base_key)}
    if ranks.is_main:
        store.write_records(run_dir, 0, records[0])
    for k, (stage, key) in enumerate(zip(stages, prepared.stage_keys), start=1):
        records[k] = stage_runner.run_stage(k, stage, key, resume=resume)
        if ranks.is_main:
            store.write_records(run_dir, k, records[k])
    stage_runner.timings["processes"] = ranks.size
    return ranks.on_main(lambda: _finish(resolved, run_dir, stage_runner, stages, records, metric_options, echo, t_start))


def _finish(resolved: ResolvedRun, run_dir: Path, stage_runner, stages: list[Stage], records: dict[int, list[dict]],
            metric_options: dict[str, Any], echo: Echo, t_start: float) -> dict[str, Any]:
    """Main process: every metric from the records, then ``result.json`` (its DONE marker last)."""

    spec = resolved.spec
    task_info = task_info_for(resolved, stages)
    labels = ["base", *[s.label for s in stages]]
    flat = [r for k in sorted(records) for r in records[k]]
    options = metric_options_from(metric_options)
    computed = compute_all(flat, task_info, labels, eval_tasks=list(spec.all_eval_tasks), **options)
    result = {
        "schema_version": store.SCHEMA_VERSION,
        "run_id": run_dir.name,
        "spec": spec.to_dict(),
        "resolved_params": resolved.params,
        **provenance(resolved),
        "timings": {**stage_runner.timings, "total_seconds": round(time.time() - t_start, 3)},
        "tasks": list(spec.chain),
        "stages": labels,
        "eval_tasks": list(spec.all_eval_tasks),
        "task_info": task_info,
        "metric_options": options,
        **computed,
        "sharpness": stage_runner.sharpness if spec.sharpness else None,
        "records": f"{RECORDS_DIR}/",
        "checkpoints": f"{CHECKPOINTS_DIR}/",
        "complete": True,
    }
    store.write_result(run_dir, result)
    echo(f"{run_dir.name}: done in {result['timings']['total_seconds']:.0f}s")
    return store.load_result(run_dir)


def check_same_data(result: Mapping[str, Any], resolved: ResolvedRun, run_dir: Path) -> None:
    """A complete run computed on other data (an edited task file) must not pass for this config's result."""
    stored = (result.get("fingerprints") or {}).get("data") or {}
    for name, task in resolved.tasks.items():
        if name in stored and stored[name] != task.fingerprint():
            raise ConfigError(f"{run_dir} was computed on different data for task {name!r} (its data files changed); "
                              f"move that directory away or pass another --out to recompute")


