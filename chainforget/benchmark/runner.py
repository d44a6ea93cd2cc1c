"""Run one chain with one strategy: train stage by stage, evaluate after each, store records and result.json.

The flow (see docs/contracts.md): resolve the spec (tasks, strategy hyper-parameters, training config) -> build the
Avalanche benchmark -> evaluate the base model (row 0) -> for every stage: load its weights from the prefix store if
an identical prefix was trained before, else train it through the causal-LM template and evaluate on the whole test
stream -> compute every metric from the stored records -> write ``result.json`` and the ``DONE`` marker last.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from chainforget.benchmark.prefix import PrefixStore, base_key, stage_key
from chainforget.benchmark.spec import RunSpec
from chainforget.errors import ConfigError

Echo = Callable[[str], None]


@dataclass
class Prepared:
    """A spec with everything resolved: task objects, strategy, validated hyper-parameters and training config."""

    spec: RunSpec
    tasks: dict[str, Any]
    strategy: Any
    params: dict[str, Any]
    train_cfg: Any
    model_spec: Any


def prepare(spec: RunSpec) -> Prepared:
    """Resolve names and validate every setting before any heavy work (errors are one-liners)."""
    from chainforget.engine.models import resolve_model
    from chainforget.engine.training import TrainConfig
    from chainforget.plugins import registries
    from chainforget.tasks import resolve_task

    for name in spec.task_options:
        if name not in spec.all_eval_tasks:
            raise ConfigError(f"task_options names {name!r}, which is neither in the chain nor in eval_tasks")
    tasks, names = {}, {}
    for given in spec.all_eval_tasks:
        task = resolve_task(given)  # a registered name or a task file path
        options = spec.task_options.get(given) or spec.task_options.get(task.name)
        tasks[task.name] = task.configure(**options) if options else task
        names[given] = task.name
    if any(given != name for given, name in names.items()):  # task files: the run speaks of task names
        spec = dataclasses.replace(
            spec, chain=tuple(names[t] for t in spec.chain), eval_tasks=tuple(names[t] for t in spec.eval_tasks),
            task_options={names.get(k, k): v for k, v in spec.task_options.items()})
    strategy = registries("strategies").get(spec.strategy)
    params = strategy.resolve(spec.strategy_params)
    train_cfg = TrainConfig.from_mapping({**spec.train, "seed": spec.seed})
    model_spec = resolve_model(spec.model)
    train = {k: v for k, v in dataclasses.asdict(train_cfg).items() if k != "seed"}
    resolved = dataclasses.replace(spec, strategy_params=params, train=train)
    return Prepared(resolved, tasks, strategy, params, train_cfg, model_spec)


def seed_everything(seed: int, stage: int) -> None:
    """Reseed every RNG at the start of a stage so a stage's randomness never depends on how we got there."""
    import random

    import numpy as np
    import torch

    s = (seed * 1_000_003 + stage * 7919) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


@dataclass
class Stage:
    label: str
    trained_tasks: tuple[str, ...]
    examples: list  # the training examples of this stage
    signature: Mapping[str, Any]


def plan_stages(prep: Prepared, train_examples: dict[str, list]) -> tuple[list[Stage], Any]:
    from chainforget.strategies.base import StrategyContext

    spec, strategy = prep.spec, prep.strategy
    ctx = StrategyContext(chain=spec.chain, tasks={n: prep.tasks[n] for n in spec.chain}, seed=spec.seed,
                          limit_train=spec.limit_train, train_examples=train_examples)
    if strategy.joint:
        union = [ex for name in spec.chain for ex in train_examples[name]]
        stages = [Stage("joint", spec.chain, union, strategy.signature(prep.params, 0))]
    else:
        stages = [Stage(name, (name,), list(train_examples[name]), strategy.signature(prep.params, i))
                  for i, name in enumerate(spec.chain)]
    if strategy.extra_stages is not None:
        for extra in strategy.extra_stages(prep.params, ctx):
            sig = {"strategy": spec.strategy, "params": prep.params, "stage": extra.label}
            stages.append(Stage(extra.label, (), list(extra.examples), sig))
    return stages, ctx


def _common_key(prep: Prepared) -> dict[str, Any]:
    spec = prep.spec
    return {
        "model": prep.model_spec.name, "model_fp": prep.model_spec.fingerprint(), "seed": spec.seed,
        "train": spec.train, "limit_train": spec.limit_train, "limit_eval": spec.limit_eval,
        "eval": {name: {"fp": prep.tasks[name].fingerprint(), "primary": prep.tasks[name].spec.primary_metric,
                        "metrics": [m.name for m in prep.tasks[name].spec.metrics]} for name in spec.all_eval_tasks},
        "sharpness": spec.sharpness,
    }


def _stage_data_id(stage: Stage, prep: Prepared) -> dict[str, Any]:
    ids = [ex.id for ex in stage.examples]
    from chainforget.benchmark.spec import short_hash

    return {"label": stage.label, "tasks": list(stage.trained_tasks), "n": len(ids), "ids": short_hash(ids, 16),
            "fp": [prep.tasks[t].fingerprint() for t in stage.trained_tasks if t in prep.tasks]}


def run(spec: RunSpec, out_dir: str | Path = "runs", *, resume: bool = False, progress: bool = True,
        echo: Echo | None = None, metric_options: Mapping[str, Any] | None = None,
        loggers: tuple[str, ...] = (), wait: bool = False) -> dict[str, Any]:
    """Run (or finish, or just read) one run; returns its result dict.

    ``wait``: if another process holds this run's lock, wait for it (leaderboards) instead of failing (``run``).
    """
    from filelock import FileLock, Timeout

    from chainforget.benchmark import results as store
    from chainforget.engine.distributed import Ranks

    echo = echo or (lambda msg: None)
    metric_options = metric_options_from(metric_options)
    prep = prepare(spec)
    ranks = Ranks.current()  # under `accelerate launch`: rank 0 owns locks, decisions and files; all ranks train
    if not ranks.is_main:
        echo, progress, loggers = (lambda msg: None), False, ()
    run_id = prep.spec.run_id()
    run_dir = Path(out_dir) / run_id
    held: list[Any] = []

    def claim():
        """Main process: lock the run; its result if complete, else None (stale temp files cleared)."""
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = FileLock(str(run_dir / ".lock"), timeout=-1 if wait else 0)
            if wait and lock.is_locked:
                echo(f"{run_id}: another process is computing it; waiting")
            lock.acquire()
        except Timeout:
            raise ConfigError(f"run {run_id} is being computed by another process (lock {run_dir / '.lock'}); "
                              f"wait for it to finish or pass a different --out") from None
        held.append(lock)
        if store.is_complete(run_dir):
            result = store.load_result(run_dir)
            check_same_data(result, prep, run_dir)
            return result
        from chainforget.benchmark.atomic import remove_stale_temps

        remove_stale_temps(run_dir)  # left by a killed predecessor; we hold the run's lock
        return None

    try:
        done = ranks.on_main(claim)
        if done is not None:
            echo(f"{run_id}: complete, nothing to do")
            return done
        return _execute(prep, run_dir, resume=resume, progress=progress, echo=echo,
                        metric_options=dict(metric_options or {}), loggers=loggers, ranks=ranks)
    finally:
        for lock in held:
            lock.release()


def _execute(prep: Prepared, run_dir: Path, *, resume: bool, progress: bool, echo: Echo,
             metric_options: dict[str, Any], loggers: tuple[str, ...], ranks) -> dict[str, Any]:
    from chainforget.benchmark import results as store
    from chainforget.benchmark.atomic import atomic_write_json
    from chainforget.benchmark.stagerun import StageRunner

    spec = prep.spec
    if ranks.is_main:
        atomic_write_json(run_dir / "spec.json", spec.to_dict())
    t_start = time.time()
    sr = StageRunner(prep, run_dir, PrefixStore(run_dir.parent), progress=progress, echo=echo, loggers=loggers,
                     ranks=ranks)
    stages = sr.stages
    common = _common_key(prep)

    records = {0: sr.base_records(base_key(common))}
    if ranks.is_main:
        store.write_records(run_dir, 0, records[0])
    steps: list[dict[str, Any]] = []
    for k, stage in enumerate(stages, start=1):
        steps.append({"data": _stage_data_id(stage, prep), "signature": stage.signature})
        records[k] = sr.stage(k, stage, stage_key(common, steps), resume=resume)
        if ranks.is_main:
            store.write_records(run_dir, k, records[k])
    sr.timings["processes"] = ranks.size
    return ranks.on_main(lambda: _finish(prep, run_dir, sr, stages, records, metric_options, echo, t_start))


def _finish(prep: Prepared, run_dir: Path, sr, stages: list[Stage], records: dict[int, list[dict]],
            metric_options: dict[str, Any], echo: Echo, t_start: float) -> dict[str, Any]:
    """Main process: every metric from the records, then ``result.json`` (its DONE marker last)."""
    from chainforget.benchmark import results as store
    from chainforget.benchmark.provenance import provenance
    from chainforget.metrics.compute import compute_all

    spec = prep.spec
    task_info = task_info_for(prep, stages)
    labels = ["base", *[s.label for s in stages]]
    flat = [r for k in sorted(records) for r in records[k]]
    options = metric_options_from(metric_options)
    computed = compute_all(flat, task_info, labels, eval_tasks=list(spec.all_eval_tasks), **options)
    result = {
        "schema_version": store.SCHEMA_VERSION,
        "run_id": run_dir.name,
        "spec": spec.to_dict(),
        "resolved_params": prep.params,
        **provenance(prep),
        "timings": {**sr.timings, "total_seconds": round(time.time() - t_start, 3)},
        "tasks": list(spec.chain),
        "stages": labels,
        "eval_tasks": list(spec.all_eval_tasks),
        "task_info": task_info,
        "metric_options": options,
        **computed,
        "sharpness": sr.sharpness if spec.sharpness else None,
        "records": "records/",
        "checkpoints": "checkpoints/",
        "complete": True,
    }
    store.write_result(run_dir, result)
    echo(f"{run_dir.name}: done in {result['timings']['total_seconds']:.0f}s")
    return store.load_result(run_dir)


def check_same_data(result: Mapping[str, Any], prep: Prepared, run_dir: Path) -> None:
    """A complete run computed on other data (an edited task file) must not pass for this config's result."""
    stored = (result.get("fingerprints") or {}).get("data") or {}
    for name, task in prep.tasks.items():
        if name in stored and stored[name] != task.fingerprint():
            raise ConfigError(f"{run_dir} was computed on different data for task {name!r} (its data files changed); "
                              f"move that directory away or pass another --out to recompute")


METRIC_OPTION_DEFAULTS = {"min_group_size": 20, "n_boot": 1000, "seed": 0}


def metric_options_from(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with the user's metric options; unknown keys and bad values are one-line errors."""
    from chainforget.benchmark.spec import check_keys

    options = dict(options or {})
    check_keys(options, set(METRIC_OPTION_DEFAULTS), "metric option")
    for key, value in options.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
            raise ConfigError(f"metric option {key} must be a {'non-negative' if key == 'seed' else 'positive'} "
                              f"integer, got {value!r}")
    return {**METRIC_OPTION_DEFAULTS, **options}


def task_info_for(prep: Prepared, stages: list[Stage]) -> dict[str, dict[str, Any]]:
    info = {}
    for name in prep.spec.all_eval_tasks:
        tspec = prep.tasks[name].spec
        trained_at = next((k for k, s in enumerate(stages, start=1) if name in s.trained_tasks), None)
        metric = tspec.metric(tspec.primary_metric)
        info[name] = {"kind": tspec.kind, "format": tspec.format, "primary_metric": tspec.primary_metric,
                      "higher_is_better": metric.higher_is_better, "trained_at": trained_at}
    return info
