"""``replay``: rehearsal of earlier chain tasks' training examples while training later ones.

Buffer: for every earlier task of the chain, ``size`` examples (or ``ceil(fraction * its training examples)`` when
``size`` is 0), chosen ``group_balanced`` (every demographic group keeps examples; the default) or ``random``. The
choice is a pure function of that task's training examples and the seed (see ``selection.py``), so a resumed run,
or a run on another machine, rehearses the same examples. Avalanche's storage policies are not used for the choice
because they draw from the global torch RNG and pick at the end of each experience from model-independent but
order-dependent state; the buffer is still an Avalanche dataset concatenated to the experience's dataset.

How: in ``after_train_dataset_adaptation`` (Avalanche calls it before the training data loader is built) the buffer
examples are appended to ``strategy.adapted_dataset``, so they are shuffled into the stage's optimizer batches like
any other example and each one is seen once per epoch. On the chain's first task there is nothing to rehearse, so
that stage trains exactly like ``naive`` and shares its weights.
"""

from __future__ import annotations

from typing import Any, Mapping

from chainforget.errors import DataError
from chainforget.strategies.base import (
    Param,
    StageWork,
    StrategyContext,
    StrategyPlugin,
    StrategySpec,
    chain_index,
    naive_at_first_task,
)
from chainforget.strategies.selection import SELECTIONS, quota, select

PARAMS = (
    Param("fraction", "float", 0.05, "share of each earlier task's training examples kept for rehearsal "
          "(rounded up, at least 1)", low=0.0, high=1.0),
    Param("size", "int", 0, "examples kept per earlier task; 0 = use fraction", low=0),
    Param("selection", "str", "group_balanced", "group_balanced keeps every demographic group; random is a seeded "
          "uniform sample", choices=SELECTIONS),
    Param("seed", "int", -1, "seed of the buffer choice; -1 uses the run's --seed", low=-1),
)


class ReplayPlugin(StrategyPlugin):
    """Appends the rehearsal buffer of all earlier chain tasks to each experience's training dataset."""

    supports_distributed = True  # the buffer is a pure function of data and seed: the same on every rank

    def __init__(self, params: Mapping[str, Any], context: StrategyContext):
        self.params, self.context = dict(params), context
        self.seed = context.seed if params["seed"] < 0 else params["seed"]
        self.buffer: dict[str, list[str]] = {}  # task -> example ids kept, filled as the chain advances
        self.last_added: list[Any] = []  # the examples appended to the latest experience

    def choose(self, task: str) -> list[Any]:
        """The buffer of ``task``: a pure function of its training examples, the params and the seed."""
        examples = list(self.context.train_examples[task])
        n = quota(len(examples), self.params["fraction"], self.params["size"])
        return select(examples, n, self.params["selection"], f"replay:{self.seed}:{task}")

    def buffer_examples(self, index: int, current: str | None = None) -> list[Any]:
        """Examples rehearsed at chain index ``index``: the buffers of the tasks trained before it."""
        out: list[Any] = []
        for task in dict.fromkeys(self.context.chain[:index]):
            if task == current:
                continue  # a task that comes back in the chain is trained in full anyway
            if task not in self.buffer:
                self.buffer[task] = [str(ex.id) for ex in self.choose(task)]
            by_id = {str(ex.id): ex for ex in self.context.train_examples[task]}
            missing = [i for i in self.buffer[task] if i not in by_id]
            if missing:
                raise DataError(f"replay buffer names {len(missing)} {task} examples (e.g. {missing[0]!r}) that are "
                                f"not in its training data any more; the data changed since the checkpoint, "
                                f"rerun without --resume")
            out += [by_id[i] for i in self.buffer[task]]
        return out

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        index = chain_index(strategy, self.context)
        current = getattr(strategy, "task_name", None)
        self.last_added = self.buffer_examples(min(index, len(self.context.chain)), current)
        if self.last_added:
            strategy.adapted_dataset = extend_dataset(strategy.adapted_dataset, self.last_added, self.context)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": {task: list(ids) for task, ids in self.buffer.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.buffer = {str(t): [str(i) for i in ids] for t, ids in dict(state.get("buffer", {})).items()}


def extend_dataset(dataset, examples: list[Any], context: StrategyContext):
    """``dataset`` followed by ``examples`` (each keeps its own task), as the benchmark builds datasets."""
    from chainforget.engine.datasets import examples_dataset

    return dataset.concat(examples_dataset(examples, context.tasks))


def make_plugins(params: Mapping[str, Any], ctx: StrategyContext) -> list:
    return [ReplayPlugin(params, ctx)]


def stage_work(plugins: list, stage: int, task: str) -> StageWork:
    """The buffer joins the stage's training data (as ``after_train_dataset_adaptation`` appends it)."""
    (plugin,) = plugins
    return StageWork(added=plugin.buffer_examples(min(stage, len(plugin.context.chain)), task))


SPEC = StrategySpec(
    name="replay",
    description="rehearse a seeded, group-balanced share of every earlier task's training data (fraction/size)",
    params=PARAMS,
    make_plugins=make_plugins,
    train_signature=naive_at_first_task("replay"),
    stage_work=stage_work,
)
