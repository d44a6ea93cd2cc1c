"""A chain of tasks as an Avalanche benchmark: one train experience per chain task, one test experience per eval
task.

Built with Avalanche's own generator (``benchmark_from_datasets``) over the datasets of ``engine.datasets`` (items
are ``Example`` objects). Two data attributes ride along (neither is appended to the items):

- ``targets``: an integer id per (task, group), ``group_id(task, group)`` = the first 7 hex digits of
  ``sha256("<task>\\0<group>")`` as an int (< 2**28). It is stable across processes and benchmarks, so Avalanche's
  class-balanced storage policies (``ClassBalancedBuffer``, ``ParametricBuffer(groupby="class")``) balance replay
  buffers by demographic group, even across joint or re-tuning experiences built later from example lists.
  ``ChainBenchmark.group_names`` maps the ids back.
- ``targets_task_labels``: the task's position in ``ChainBenchmark.task_ids`` (chain order, then extra eval tasks).

Avalanche is imported inside the functions (it takes seconds to import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from chainforget.engine.datasets import examples_dataset, experience_dataset, group_id, task_of
from chainforget.errors import ConfigError
from chainforget.tasks.base import Example


def experience_from_examples(examples: Sequence[Example], index: int, label: str,
                             tasks: Mapping[str, Any] | Sequence[str] | None = None):
    """An Avalanche experience over an explicit example list (joint training, safety re-tuning): experience number
    ``index``, ``task_name`` = ``label``."""
    from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience
    from avalanche.benchmarks.scenarios.generic_scenario import EagerCLStream

    exp = DatasetExperience(dataset=examples_dataset(examples, tasks), current_experience=index)
    exp.task_name = label
    exp.origin_stream = EagerCLStream(label, [exp], set_stream_info=False)  # the template reads the stream's name
    return exp


@dataclass
class ChainBenchmark:
    """The Avalanche scenario of one chain plus the names that label its experiences."""

    scenario: Any
    train_task_names: list[str]
    eval_task_names: list[str]
    task_ids: dict[str, int]
    group_names: dict[int, tuple[str, str]] = field(default_factory=dict)

    @property
    def train_stream(self):
        return self.scenario.train_stream

    @property
    def test_stream(self):
        return self.scenario.test_stream

    def experience_dataset(self, examples: Sequence[Example]):
        """A dataset for an extra experience (joint training, safety re-tuning) with this benchmark's task ids."""
        return experience_dataset(examples, self.task_ids)


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for n in names:
        seen.setdefault(n, None)
    return list(seen)


def _limit(limit: int | Mapping[str, int] | Callable[[str], int | None] | None, name: str) -> int | None:
    if callable(limit):
        return limit(name)
    if isinstance(limit, Mapping):
        return limit.get(name, limit.get("default"))
    return limit


def build_benchmark(train_tasks: Sequence[Any], eval_tasks: Sequence[Any] | None = None,
                    limit_train: Any = None, limit_eval: Any = None) -> ChainBenchmark:
    """Chain ``train_tasks`` (names, task-file paths or ``Task``s; repeats allowed) into train experiences, and
    ``eval_tasks`` (default: the chain's tasks; duplicates dropped) into test experiences.

    Limits are an int for every task, a mapping task -> int (with an optional "default"), or a callable."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    from chainforget.tasks import resolve_task

    train = [resolve_task(t) for t in train_tasks]
    evals = [resolve_task(t) for t in (eval_tasks if eval_tasks is not None else train_tasks)]
    if not train:
        raise ConfigError("the chain is empty; give at least one task, e.g. --chain bbq,gsm8k")
    eval_by_name = {t.name: t for t in evals}
    eval_names = _unique(t.name for t in evals)
    if not eval_names:
        raise ConfigError("no evaluation tasks; give --eval-tasks or a chain")
    task_ids = {n: i for i, n in enumerate(_unique([t.name for t in train] + eval_names))}
    group_names: dict[int, tuple[str, str]] = {}

    def dataset(examples: list[Example]):
        for ex in examples:
            group_names[group_id(task_of(ex), ex.group)] = (task_of(ex), ex.group)
        return experience_dataset(examples, task_ids)

    train_sets = []
    for t in train:
        if t.spec.split.eval_only:
            raise ConfigError(f"task {t.name!r} is evaluation-only (a held-out probe) and cannot be trained in a chain; "
                              f"list it under --eval-tasks instead")
        train_sets.append(dataset(t.train_examples(_limit(limit_train, t.name))))
    test_sets = [dataset(eval_by_name[n].eval_examples(_limit(limit_eval, n))) for n in eval_names]
    scenario = benchmark_from_datasets(train=train_sets, test=test_sets)
    for exp, t in zip(scenario.train_stream, train):
        exp.task_name = t.name  # the engine reads experience.task_name first
    for exp, name in zip(scenario.test_stream, eval_names):
        exp.task_name = name
    return ChainBenchmark(scenario, [t.name for t in train], eval_names, task_ids, group_names)
