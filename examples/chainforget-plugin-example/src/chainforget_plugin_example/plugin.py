"""The module the ``chainforget`` entry point names: one hook implementation per kind of thing it adds.

Every hook is marked ``@hookimpl``: chainforget warns about a ``chainforget_register_*`` function without it.

chainforget's plugin manager imports this module when it starts (``chainforget list``, ``run``, ...), so it imports
nothing heavy: the strategy imports torch inside its hooks, the task reads its data only when asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from chainforget.plugins import hookimpl

DATA = Path(__file__).parent / "data"  # shipped with the package (see [tool.setuptools.package-data])
TASK_FILE = DATA / "unit-convert.yaml"
DERIVED_TASK_FILE = DATA / "bbq-age.yaml"


# -- strategies: a regulariser and a weight-editing one ------------------------------------------------------------
@hookimpl
def chainforget_register_strategies(registry):
    from chainforget_plugin_example import l2_anchor, wise_ft

    for spec in (l2_anchor.SPEC, wise_ft.SPEC):
        registry.register(spec.name, spec, spec.description)


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

    # direction, range and unit are what leaderboard, compare, plot and findings read to sort, bound and label it
    spec = MetricSpec(name="safety_retention", description="last-stage score of a safety task over its score "
                      "right after training it (1 = nothing forgotten)", higher_is_better=True, low=0.0, high=None,
                      scope="task", compute=safety_retention, unit="ratio")
    registry.register(spec.name, spec, spec.description)


# -- tasks: one from shipped data, one derived from a built-in ----------------------------------------------------
@hookimpl
def chainforget_register_tasks(registry):
    from chainforget.tasks import load_task_file

    task = load_task_file(TASK_FILE)  # reads the YAML now, the JSONL only when examples are needed
    registry.register(task.name, task, task.spec.description)
    # `base: bbq` is looked up in the registry this hook receives (built-in tasks are registered first)
    derived = load_task_file(DERIVED_TASK_FILE, tasks=registry)
    registry.register(derived.name, derived, derived.spec.description)
