"""Run specifications: one frozen, hashable description of a run; its hash is the run id.

A ``RunSpec`` holds everything that changes what a run computes (model, chain, strategy and its resolved
hyper-parameters, training settings, seed, limits, evaluation set). Metric options (bootstrap resamples, minimum group
size) are not part of the id: metrics are recomputed from stored records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from chainforget.config.ranges import check_number, check_train_bounds
from chainforget.errors import ConfigError, brief, did_you_mean

SPEC_VERSION = 1
DTYPES = ("auto", "float32", "bfloat16", "float16")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def later(default: Any, omit: tuple, *, computes: bool = True):
    """A setting added after run ids were first published: left out of the hash at the ``omit`` values, so older ids
    stay valid; ``computes``: it changes what a stage computes, so it joins the prefix keys when set."""
    return field(default=default, metadata={"omit": omit, "computes": computes})


@dataclass(frozen=True)
class RunSpec:
    """A run's settings, declared once: the fields drive the run-config and suite keys, their checks (by type), the
    hash and the prefix keys. Adding one: docs/architecture.md, "Adding a run setting"."""

    chain: tuple[str, ...]
    strategy: str = "naive"
    model: str = "smollm2-135m"
    seed: int = 0
    strategy_params: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig overrides (validated by the engine)
    eval_tasks: tuple[str, ...] = ()  # evaluated in addition to the chain's tasks
    limit_train: int | Mapping[str, int] | None = None  # per task; a mapping may give per-task values + "default"
    limit_eval: int | Mapping[str, int] | None = None
    task_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sharpness: bool = False
    eval_batch_size: int = 16
    # weights/compute dtype (engine.precision); hashed once resolved (auto -> float32 on CPU, bfloat16 on a GPU),
    # float32 was the only dtype before
    dtype: str = later("auto", ("auto", "float32"))
    chat_template: bool = later(False, (False,))  # wrap prompts in the tokenizer's chat template (train and score)
    trust_remote_code: bool = later(False, (False,), computes=False)  # let a model directory's own code run

    def __post_init__(self) -> None:
        for name in ("strategy", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name} must be a name (text), got {brief(getattr(self, name))}")
        for name in ("strategy_params", "train", "task_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"{name} must be a mapping of keys to values, got {brief(getattr(self, name))}")
        for task, options in self.task_options.items():
            if not isinstance(options, Mapping):
                raise ConfigError(f"task_options.{task} must be a mapping such as {{primary_metric: gold_logprob}}, "
                                  f"got {brief(options)}")
        if "seed" in self.train:
            raise ConfigError("seed belongs at the top level of a run (--seed or `seed:`), not under train")
        for f in fields(self):
            if isinstance(f.default, bool) and not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"{f.name} must be true or false, got {brief(getattr(self, f.name))}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {'|'.join(DTYPES)}, got {brief(self.dtype)}; pass --dtype "
                              f"{'|'.join(DTYPES)}")
        chain = tuple(self.chain)
        if not chain:
            raise ConfigError("a chain needs at least one task; pass e.g. --chain bbq,gsm8k")
        dupes = sorted({t for t in chain if chain.count(t) > 1})
        if dupes:
            raise ConfigError(f"task {brief(dupes[0])} appears twice in the chain {','.join(chain)}; "
                              f"each task may be trained once per chain")
        object.__setattr__(self, "chain", chain)
        object.__setattr__(self, "eval_tasks", tuple(t for t in dict.fromkeys(self.eval_tasks) if t not in chain))
        for name in ("limit_train", "limit_eval"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                value = dict(sorted(value.items()))
                object.__setattr__(self, name, value)
                for task, n in value.items():
                    if task != "default" and task not in self.all_eval_tasks:
                        raise ConfigError(f"{name} names task {brief(task)}, which is not in this run; "
                                          f"use the chain's task names or 'default'")
                    _check_limit(name, n)
            else:
                _check_limit(name, value)
        check_number("seed", self.seed)
        _check_positive("eval_batch_size", self.eval_batch_size, "a positive integer")
        check_train_bounds(self.train)
        object.__setattr__(self, "strategy_params", dict(sorted(dict(self.strategy_params).items())))
        object.__setattr__(self, "train", dict(sorted(dict(self.train).items())))
        object.__setattr__(self, "task_options", {k: dict(v) for k, v in sorted(dict(self.task_options).items())})

    def limit_train_for(self, task: str) -> int | None:
        return limit_for(self.limit_train, task)

    def limit_eval_for(self, task: str) -> int | None:
        return limit_for(self.limit_eval, task)

    @property
    def all_eval_tasks(self) -> tuple[str, ...]:
        return self.chain + self.eval_tasks

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chain"] = list(self.chain)
        d["eval_tasks"] = list(self.eval_tasks)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        check_keys(d, known, "run spec")
        d = dict(d)
        for key in ("chain", "eval_tasks"):
            if key in d:
                d[key] = tuple(parse_task_list(d[key], key))
        return cls(**d)

    def run_id(self) -> str:
        """Readable prefix + hash of the canonical spec: the same config always maps to the same directory."""
        label = "-".join(self.chain) + f"_{self.strategy}_s{self.seed}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        d = {k: v for k, v in self.to_dict().items() if v not in HASH_OMITS.get(k, ())}
        return f"{safe}_{short_hash({'v': SPEC_VERSION, **d}, 10)}"


def run_settings() -> tuple[str, ...]:
    """The names of every run setting, in declaration order."""
    return tuple(f.name for f in fields(RunSpec))


HASH_OMITS = {f.name: f.metadata["omit"] for f in fields(RunSpec) if "omit" in f.metadata}
RUN_CONFIG_KEYS = frozenset(run_settings()) | {"metric_options"}  # a run config file's keys


def computing_later_settings(spec: RunSpec) -> dict[str, Any]:
    """The later settings that change what a stage computes, where set away from their old value (prefix keys)."""
    return {f.name: getattr(spec, f.name) for f in fields(spec) if f.metadata.get("computes")
            and getattr(spec, f.name) not in f.metadata["omit"]}


def _check_positive(name: str, value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be {what}, got {brief(value)}")
    check_number(name, value)


def _check_limit(name: str, value: Any) -> None:
    if value is not None:
        _check_positive(name, value, "a positive integer (or a mapping task -> positive integer)")


def limit_for(limits: int | Mapping[str, int] | None, task: str) -> int | None:
    if isinstance(limits, Mapping):
        return limits.get(task, limits.get("default"))
    return limits


def check_keys(d: Mapping[str, Any], known: set[str], what: str) -> None:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what} must be a mapping of keys to values, got {type(d).__name__}")
    for key in d:
        if key not in known:
            hint = did_you_mean(key, sorted(known))
            raise ConfigError(f"unknown {what} key {brief(key)}; {hint}known keys: {', '.join(sorted(known))}")


def parse_task_list(value: Any, what: str = "chain") -> list[str]:
    """'bbq,gsm8k' or ['bbq', 'gsm8k'] -> ['bbq', 'gsm8k']."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [v.strip() if isinstance(v, str) else v for v in value]
    else:
        raise ConfigError(f"{what} must be a comma-separated string or a list of task names, got {brief(value)}")
    if not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{what} has an empty or non-text task name: {brief(value)}; write e.g. bbq,gsm8k")
    return items


def parse_set_options(pairs: list[str] | tuple[str, ...]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """``--set replay.fraction=0.05 --set train.learning_rate=1e-5`` -> ({strategy: {param: value}}, {train key: value}).

    Values stay strings here; the strategy's Param and the TrainConfig validate and convert them.
    """
    strategy: dict[str, dict[str, str]] = {}
    train: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key or not value.strip():
            raise ConfigError(f"--set expects STRATEGY.PARAM=VALUE or train.KEY=VALUE, got {brief(pair)}; "
                              f"e.g. --set replay.fraction=0.05")
        owner, _, param = key.strip().partition(".")
        if owner == "train":
            train[param] = value.strip()
        else:
            strategy.setdefault(owner, {})[param] = value.strip()
    return strategy, train
