"""Synthetic strategy contexts (examples in groups of chosen sizes) shared by the strategy and engine tests."""

from types import SimpleNamespace

from chainforget.strategies.base import StrategyContext
from chainforget.tasks.base import Example


def make_examples(task, sizes):
    """``sizes``: group -> count; ids are unique within the task."""
    out = []
    for group, n in sizes.items():
        out += [Example(id=f"{task}/{group}/{i}", group=group, prompt=f"{task} {group} {i}?", target=" yes", task=task,
                        gold=0, options=(" yes", " no")) for i in range(n)]
    return out


def make_context(chain=("safe", "cap"), seed=0, **sizes):
    kinds = {"safe": "safety", "safe2": "safety", "cap": "capability", "cap2": "capability"}
    default = {"safe": {"A": 40, "B": 20, "C": 5}, "safe2": {"X": 10, "Y": 10},
               "cap": {"all": 60}, "cap2": {"all": 30}}
    train = {t: make_examples(t, sizes.get(t, default[t])) for t in chain}
    tasks = {t: SimpleNamespace(spec=SimpleNamespace(kind=kinds[t], name=t)) for t in chain}
    return StrategyContext(chain=tuple(chain), tasks=tasks, seed=seed, limit_train=None, train_examples=train)
