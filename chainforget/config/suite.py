"""Suites: a grid of strategies x chain orders x seeds (x fine-tuning method x learning rate) as RunSpecs.

A suite is a mapping (a preset or a YAML file, read with ``yaml.safe_load``)::

    model: smollm2-135m
    chains: [[bbq, gsm8k], [gsm8k, bbq]]
    strategies: [naive, {replay: {fraction: 0.05}}]
    seeds: [0, 1, 2]
    limit_train: 256
    limit_eval: 512
    finetune: [full, lora]        # optional grid axis
    learning_rate: [1.0e-5, 1.0e-4]  # optional grid axis
    train: {epochs: 1}            # fixed training settings
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Mapping

from chainforget.config.files import load_config_file
from chainforget.config.ranges import check_number
from chainforget.config.spec import RunSpec, check_keys, parse_task_list, run_settings
from chainforget.errors import ConfigError, brief, did_you_mean
from chainforget.plugins import registries

# the grid's axes stand for these run settings; every other run setting is a suite key of the same name, fixed for
# every run of the grid (it comes from RunSpec's fields: a new run setting is a suite key with no edit here)
GRID_AXES = {"chain": "chains", "strategy": "strategies", "strategy_params": "strategies", "seed": "seeds"}
BUILT_BY_GRID = ("train", "eval_tasks", "limit_train", "limit_eval", "task_options")  # per chain or per grid point
PASSED = tuple(k for k in run_settings() if k not in GRID_AXES and k not in BUILT_BY_GRID)  # as given, to each run
SUITE_KEYS = frozenset(run_settings()) - set(GRID_AXES) | set(GRID_AXES.values()) | {
    "finetune", "learning_rate", "metric_options", "description"}
TaskName = Callable[[str], str]  # a chain entry (a task name or a task file) -> its task's name


def load_suite_file(path: str | Path) -> dict[str, Any]:
    """A suite YAML file as a mapping (one-line errors for anything else)."""
    return load_config_file(path, "suite file", hint="pass a YAML file or a preset name (see `chainforget list presets`)",
                            mapping_hint="model:, chains:, strategies: ...")


def resolve_suite(name_or_path: str, max_runs: int | None = None) -> dict[str, Any]:
    """A preset name or a YAML suite file, its bounds checked before anything expands it (``check_suite_bounds``)."""
    presets = registries("presets")
    if name_or_path in presets:
        suite = dict(presets.get(name_or_path))
    elif name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).exists():
        suite = load_suite_file(name_or_path)
    else:
        raise ConfigError(presets.unknown_message(name_or_path) + "; or pass a suite YAML file")
    check_suite_bounds(suite, max_runs)
    return suite


MAX_RUNS = 10_000  # runs one suite may expand to unless --max-runs says more (a real study: a few hundred)
_AXES = (("chains", "chains"), ("strategies", "strategies"), ("seeds", "seeds"), ("finetune", "fine-tuning methods"),
         ("learning_rate", "learning rates"))


def grid_size(suite: Mapping[str, Any]) -> tuple[int, str]:
    """How many runs the suite expands to, counted from its axes without building one, and the product in words."""
    total, parts = 1, []
    for key, words in _AXES:
        value = suite.get(key, [0] if key == "seeds" else None)
        n = len(value) if isinstance(value, (list, tuple)) else 1
        total *= n
        if n > 1:
            parts.append(f"{n:,} {words}")
    return total, " x ".join(parts) or "1 run"


def check_suite_bounds(suite: Mapping[str, Any], max_runs: int | None = None) -> None:
    """Refuse, before any expansion or work, a grid larger than ``max_runs`` (default ``MAX_RUNS``) and metric
    options out of range: every command that reads a suite (``--dry-run`` and ``--no-run`` included) checks both."""
    from chainforget.config.metric_options import metric_options_from

    limit = MAX_RUNS if max_runs is None else check_number("max_runs", max_runs)
    options = suite.get("metric_options")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"suite key 'metric_options' must be a mapping of keys to values, got {brief(options)}")
    metric_options_from(options)
    n, words = grid_size(suite)
    if n > limit:
        raise ConfigError(f"the suite expands to {n:,} runs ({words}), more than the {limit:,} allowed; split it into "
                          f"several suite files, or pass --max-runs {n} if you mean to run them all")


def _as_list(value: Any, key: str) -> list:
    if value is None:
        return [None]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _strategy_entries(value: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for item in _as_list(value, "strategies"):
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, Mapping) and len(item) == 1:
            (name, params), = item.items()
            if params is not None and not isinstance(params, Mapping):
                raise ConfigError(f"strategy entry {brief(item)} must map a strategy name to its hyper-parameters, "
                                  f"e.g. {{replay: {{fraction: 0.05}}}}")
            out.append((str(name), dict(params or {})))
        else:
            raise ConfigError(f"bad strategies entry {brief(item)}; use a name or {{name: {{param: value}}}}")
    return out


def per_chain(key: str, options: Mapping[str, Any], chains: list[tuple[str, ...]],
              eval_tasks: tuple[str, ...], keep: tuple[str, ...] = (),
              task_name: TaskName | None = None) -> list[dict[str, Any]]:
    """A suite's per-task mapping (``task_options``, a ``limit_train`` mapping) split by chain: each run gets the
    entries of the tasks it trains or evaluates (and the ``keep`` keys, e.g. ``default``).

    A name that no chain and no eval task holds is a one-line error (a typo would otherwise be silently unused).
    What ``task_options`` may call a chain entry: the entry itself and its task's name (``task_name``: the
    benchmark names task files by their task, ``benchmark.suite_runner.suite_specs``).
    """
    names = {entry: {entry, task_name(entry) if task_name else entry} for chain in chains
             for entry in (*chain, *eval_tasks)}
    known = set().union(*names.values()) if names else set()
    for task in options:
        if task not in known and task not in keep:
            listed = " | ".join(",".join(c) for c in chains)
            raise ConfigError(f"suite {key} names {task!r}, which no chain contains and eval_tasks lacks; "
                              f"{did_you_mean(task, known)}chains: {listed}")
    out = []
    for chain in chains:
        mine = set().union(*(names[e] for e in (*chain, *eval_tasks)))
        out.append({task: value for task, value in options.items() if task in mine or task in keep})
    return out


def expand_suite(suite: Mapping[str, Any], task_name: TaskName | None = None) -> list[RunSpec]:
    """Every RunSpec of the grid, in a deterministic order (chains outermost, so prefixes are trained early);
    ``task_name`` names task-file entries by their task (see ``per_chain``)."""
    check_keys(suite, SUITE_KEYS, "suite")
    if "chains" not in suite or "strategies" not in suite:
        raise ConfigError("a suite needs at least `chains:` and `strategies:`")
    for key in ("train", "task_options", "metric_options"):
        if suite.get(key) is not None and not isinstance(suite[key], Mapping):
            raise ConfigError(f"suite key {key!r} must be a mapping of keys to values, got {brief(suite[key])}")
    chains = [tuple(parse_task_list(c, "chains entry")) for c in _as_list(suite["chains"], "chains")]
    strategies = _strategy_entries(suite["strategies"])
    seeds = _as_list(suite.get("seeds", [0]), "seeds")
    finetunes = _as_list(suite.get("finetune"), "finetune")
    lrs = _as_list(suite.get("learning_rate"), "learning_rate")
    base_train = dict(suite.get("train") or {})
    eval_tasks = tuple(parse_task_list(suite.get("eval_tasks") or [], "eval_tasks"))
    task_options = dict(zip(chains, per_chain("task_options", suite.get("task_options") or {}, chains, eval_tasks,
                                              task_name=task_name)))
    limits = {}
    for key in ("limit_train", "limit_eval"):
        value = suite.get(key)
        split = per_chain(key, value, chains, eval_tasks, ("default",), task_name) if isinstance(value, Mapping) \
            else None
        limits[key] = dict(zip(chains, split)) if split is not None else {c: value for c in chains}
    specs = []
    for chain, seed, ft, lr, (strategy, params) in itertools.product(chains, seeds, finetunes, lrs, strategies):
        train = dict(base_train)
        if ft is not None:
            train["finetune"] = ft
        if lr is not None:
            train["learning_rate"] = lr
        specs.append(RunSpec(
            chain=chain, strategy=strategy, seed=seed, strategy_params=params, train=train, eval_tasks=eval_tasks,
            limit_train=limits["limit_train"][chain], limit_eval=limits["limit_eval"][chain],
            task_options=task_options[chain], **{k: suite[k] for k in PASSED if k in suite}))
    return specs


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like I/N (e.g. 1/2), got {brief(text)}") from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text}: need 1 <= I <= N")
    return i, n


def shard_specs(specs: list[RunSpec], shard: tuple[int, int] | None) -> list[RunSpec]:
    """A deterministic slice: shard i of n takes every n-th run of the grid, starting at i-1."""
    if shard is None:
        return specs
    i, n = shard
    return specs[i - 1::n]
