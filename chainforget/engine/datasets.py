"""Avalanche datasets over ``Example`` lists, with the ``targets`` (task, group) and ``targets_task_labels`` data
attributes that ``benchmark.streams`` describes; the benchmark builds its streams from them and strategies extend a
stage's data with them (replay), so the module sits below both.

Avalanche is imported inside the functions (it takes seconds to import).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

from chainforget.tasks.base import Example


def group_id(task: str, group: str) -> int:
    """The ``targets`` value of an example: a stable integer id of its (task, group)."""
    return int(hashlib.sha256(f"{task}\0{group}".encode()).hexdigest()[:7], 16)


def task_of(ex: Example) -> str:
    """An example's task: its ``task`` field, else its id's prefix."""
    return ex.task or ex.id.split("/", 1)[0]


def collate_examples(batch: list[Example]) -> list[Example]:
    """Keep a batch as a list of Examples (the engine tokenises); module-level so it pickles."""
    return list(batch)


def experience_dataset(examples: Sequence[Example], task_ids: Mapping[str, int] | None = None):
    """An Avalanche dataset over ``examples`` (any mix of tasks) with ``targets`` and ``targets_task_labels``.

    ``task_ids`` maps task names to task labels; tasks it lacks get the next free labels in order of appearance.
    """
    from avalanche.benchmarks.utils import DataAttribute
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset

    ids = dict(task_ids or {})
    for ex in examples:
        ids.setdefault(task_of(ex), len(ids))
    items = list(examples)
    return TaskAwareSupervisedClassificationDataset(
        [items],
        data_attributes=[
            DataAttribute([group_id(task_of(e), e.group) for e in items], "targets"),
            DataAttribute([ids[task_of(e)] for e in items], "targets_task_labels"),
        ],
        collate_fn=collate_examples,
    )


def examples_dataset(examples: Sequence[Example], tasks: Mapping[str, Any] | Sequence[str] | None = None):
    """``experience_dataset`` with task labels numbered by ``tasks`` (names, or a name -> Task mapping, in chain
    order, the order ``build_benchmark`` numbers them), so it concatenates cleanly with the chain's datasets."""
    return experience_dataset(examples, {n: i for i, n in enumerate(tasks or [])})
