"""The plan of one run: every name resolved and every setting validated (before any heavy work), then the run made
concrete (``prepare_run``): tasks as the model reads them, the benchmark, the stages and their prefix keys.

The runner executes a ``PreparedRun`` and ``--dry-run`` prices the same one: there is no second model of a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from chainforget.benchmark.streams import ChainBenchmark, build_benchmark
from chainforget.config.spec import RunSpec, computing_later_settings, short_hash
from chainforget.engine import chat, precision
from chainforget.engine.models import resolve_model
from chainforget.engine.training import TrainConfig
from chainforget.errors import ConfigError, did_you_mean
from chainforget.plugins import registries
from chainforget.store.prefix import base_key, stage_key
from chainforget.strategies.base import StrategyContext
from chainforget.tasks import resolve_task


@dataclass
class ResolvedRun:
    """A spec with everything resolved: task objects, strategy, validated hyper-parameters and training config."""

    spec: RunSpec
    tasks: dict[str, Any]
    strategy: Any
    params: dict[str, Any]
    train_cfg: Any
    model_spec: Any


def resolve_run(spec: RunSpec) -> ResolvedRun:
    """Resolve names and validate every setting before any heavy work (errors are one-liners)."""

    chain = ",".join(spec.chain)
    tasks, names = {}, {}
    for given in spec.all_eval_tasks:
        task = resolve_task(given)  # a registered name or a task file path
        names[given] = task.name
        key = given if given in spec.task_options else task.name
        options = spec.task_options.get(key)
        try:
            tasks[task.name] = task.configure(**options) if options else task
        except ConfigError as exc:
            raise ConfigError(f"task_options.{key} (chain {chain}): {exc}") from None
    for name in spec.task_options:
        if name not in names and name not in names.values():
            raise ConfigError(f"task_options names {name!r}, which is neither in the chain {chain} nor in "
                              f"eval_tasks; {did_you_mean(name, [*names, *names.values()])}use one of the run's "
                              f"task names")
    if any(given != name for given, name in names.items()):  # task files: the run speaks of task names
        spec = dataclasses.replace(
            spec, chain=tuple(names[t] for t in spec.chain), eval_tasks=tuple(names[t] for t in spec.eval_tasks),
            task_options={names.get(k, k): v for k, v in spec.task_options.items()})
    strategy = registries("strategies").get(spec.strategy)
    params = strategy.resolve(spec.strategy_params)
    train_cfg = TrainConfig.from_mapping({**spec.train, "seed": spec.seed})
    model_spec = resolve_model(spec.model)
    train = {k: v for k, v in dataclasses.asdict(train_cfg).items() if k != "seed"}
    # auto -> the concrete dtype of this machine, so a bf16 GPU run and a float32 CPU run get different ids
    dtype = precision.choose_precision(spec.dtype, train_cfg.finetune, train_cfg.mixed_precision).dtype
    resolved = dataclasses.replace(spec, strategy_params=params, train=train, dtype=dtype)
    return ResolvedRun(resolved, tasks, strategy, params, train_cfg, model_spec)


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


def plan_stages(resolved: ResolvedRun, train_examples: dict[str, list]) -> tuple[list[Stage], Any]:
    spec, strategy = resolved.spec, resolved.strategy
    ctx = StrategyContext(chain=spec.chain, tasks={n: resolved.tasks[n] for n in spec.chain}, seed=spec.seed,
                          limit_train=spec.limit_train, train_examples=train_examples)
    if strategy.joint:
        union = [ex for name in spec.chain for ex in train_examples[name]]
        stages = [Stage("joint", spec.chain, union, strategy.signature(resolved.params, 0))]
    else:
        stages = [Stage(name, (name,), list(train_examples[name]), strategy.signature(resolved.params, i))
                  for i, name in enumerate(spec.chain)]
    if strategy.extra_stages is not None:
        for extra in strategy.extra_stages(resolved.params, ctx):
            sig = {"strategy": spec.strategy, "params": resolved.params, "stage": extra.label}
            stages.append(Stage(extra.label, (), list(extra.examples), sig))
    return stages, ctx


def common_key(resolved: ResolvedRun) -> dict[str, Any]:
    """What every stage of this run shares (model, training settings, evaluation set): part of every prefix key."""
    spec = resolved.spec
    return {
        "model": resolved.model_spec.name, "model_fp": resolved.model_spec.fingerprint(), "seed": spec.seed,
        "train": spec.train, "limit_train": spec.limit_train, "limit_eval": spec.limit_eval,
        "eval": {name: {"fp": resolved.tasks[name].fingerprint(), "primary": resolved.tasks[name].spec.primary_metric,
                        "metrics": [m.name for m in resolved.tasks[name].spec.metrics]}
                 for name in spec.all_eval_tasks},
        "sharpness": spec.sharpness,
        **computing_later_settings(spec),  # only when they change what is computed (older prefix keys stay valid)
    }


def stage_data_id(stage: Stage, resolved: ResolvedRun) -> dict[str, Any]:
    """The identity of a stage's training data (labels, tasks, example ids, data fingerprints)."""
    ids = [ex.id for ex in stage.examples]
    return {"label": stage.label, "tasks": list(stage.trained_tasks), "n": len(ids), "ids": short_hash(ids, 16),
            "fp": [resolved.tasks[t].fingerprint() for t in stage.trained_tasks if t in resolved.tasks]}


def task_info_for(resolved: ResolvedRun, stages: list[Stage]) -> dict[str, dict[str, Any]]:
    info = {}
    for name in resolved.spec.all_eval_tasks:
        tspec = resolved.tasks[name].spec
        trained_at = next((k for k, s in enumerate(stages, start=1) if name in s.trained_tasks), None)
        metric = tspec.metric(tspec.primary_metric)
        info[name] = {"kind": tspec.kind, "format": tspec.format, "primary_metric": tspec.primary_metric,
                      "higher_is_better": metric.higher_is_better, "trained_at": trained_at,
                      # metrics resample/permute examples sharing this field as one cluster (the split unit)
                      "cluster": tspec.split.unit, "unit": getattr(metric, "unit", None) or tspec.primary_metric}
    return info


@dataclass
class PreparedRun:
    """A resolved run made concrete, exactly as the runner executes it and the dry run prices it."""

    resolved: ResolvedRun  # its tasks hand out examples as the model reads them (chat template applied)
    bench: ChainBenchmark
    train_examples: dict[str, list]  # task -> the training examples the run uses
    stages: list[Stage]
    context: StrategyContext
    base_key: str  # prefix-store key of the base model's evaluation
    stage_keys: list[str]  # prefix-store key of each stage (the chain prefix up to it)

    def plugins(self) -> list:
        """Fresh strategy plugins for this run (a run builds them once)."""
        return list(self.resolved.strategy.make_plugins(self.resolved.params, self.context))


def prepare_run(resolved: ResolvedRun, tokenizer) -> PreparedRun:
    """The tasks as the model reads them (``--chat-template`` wraps every prompt, for every consumer of examples:
    training, scoring, replay, EWC, sharpness), the benchmark, the stages and the prefix key of each."""
    spec = resolved.spec
    if spec.chat_template:
        chat.check(tokenizer, spec.model)
        resolved = dataclasses.replace(resolved, tasks=chat.chat_tasks(resolved.tasks, tokenizer))
    bench = build_benchmark([resolved.tasks[n] for n in spec.chain], [resolved.tasks[n] for n in spec.all_eval_tasks],
                            spec.limit_train_for, spec.limit_eval_for)
    train_examples = {n: list(exp.dataset) for n, exp in zip(bench.train_task_names, bench.train_stream)}
    stages, ctx = plan_stages(resolved, train_examples)
    common = common_key(resolved)
    prefix: list[dict[str, Any]] = []
    keys = []
    for stage in stages:
        prefix.append({"data": stage_data_id(stage, resolved), "signature": stage.signature})
        keys.append(stage_key(common, prefix))
    return PreparedRun(resolved, bench, train_examples, stages, ctx, base_key(common), keys)
