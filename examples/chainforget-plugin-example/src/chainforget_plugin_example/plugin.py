"""The module the ``chainforget`` entry point names: one hook implementation per kind of thing it adds.

chainforget's plugin manager imports this module when it starts (``chainforget list``, ``run``, ...), so it imports
nothing heavy: the strategy imports torch inside its hooks, the task reads its data only when asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from chainforget.plugins import hookimpl

TASK_FILE = Path(__file__).parent / "data" / "unit-convert.yaml"


# -- a strategy ----------------------------------------------------------------------------------------------------
@hookimpl
def chainforget_register_strategies(registry):
    from chainforget_plugin_example.l2_anchor import SPEC

    registry.register(SPEC.name, SPEC, SPEC.description)


# -- a metric ------------------------------------------------------------------------------------------------------
def safety_retention(inputs, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``R[T][s] / R[a][s]`` for every safety task s trained at step a: the share of its trained score kept."""
    from chainforget.metrics.base import missing

    out = {}
    for task in inputs.forgetting_tasks():
        if inputs.task_info[task].get("kind") != "safety":
            continue
        a = inputs.trained_at(task)
        trained, last = inputs.score(task, a), inputs.score(task, inputs.last)
        if not inputs.task_info[task].get("higher_is_better", True):
            out[task] = missing("a retention ratio needs a higher-is-better primary metric")
        elif trained is None or last is None:
            out[task] = missing(f"no score at stage {a} or {inputs.last}")
        elif trained <= 0:
            out[task] = missing(f"score right after training is {trained}, so the ratio is undefined")
        else:
            out[task] = {"value": last / trained, "trained": trained, "last": last, "stage_trained": a}
    return out


@hookimpl
def chainforget_register_metrics(registry):
    from chainforget.metrics.base import MetricSpec

    spec = MetricSpec(name="safety_retention", description="last-stage score of a safety task over its score "
                      "right after training it (1 = nothing forgotten)", higher_is_better=True, low=0.0, high=None,
                      scope="task", compute=safety_retention)
    registry.register(spec.name, spec, spec.description)


# -- a task --------------------------------------------------------------------------------------------------------
@hookimpl
def chainforget_register_tasks(registry):
    from chainforget.tasks import load_task_file

    task = load_task_file(TASK_FILE)  # reads the YAML now, the JSONL only when examples are needed
    registry.register(task.name, task, task.spec.description)
