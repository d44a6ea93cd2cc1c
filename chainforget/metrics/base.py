"""What a metric is: a declared direction and range plus a pure function of a run's evaluation records.

A metric never sees a model. ``compute(inputs, options)`` receives a :class:`MetricInputs` (the records and the
matrices built from them once) and returns ``{key: {"value": x, ...}}`` where ``key`` is a task name, ``task/group``
or ``"overall"``. An undefined value is ``{"value": None, "missing": "<why>"}``, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS

SCOPES = ("task", "group", "run")
TASK_UNIT = "task"  # MetricSpec.unit of a metric expressed in its task's primary-score unit

# Options every metric receives (``compute_all`` keyword arguments; result.json "metric_options").
DEFAULT_OPTIONS = METRIC_OPTION_DEFAULTS  # one definition: chainforget.config.defaults


def missing(reason: str, **extra: Any) -> dict[str, Any]:
    """The entry of an undefined value: ``None`` plus the reason (undefined is missing, not 0)."""
    return {"value": None, "missing": reason, **extra}


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: name, direction, range, scope and the pure function that computes it.

    ``higher_is_better`` is ``None`` for values that are not scores (a group name, a p-value). ``low``/``high`` bound
    every value the metric can produce (``None`` = unbounded). ``unit`` names what the number counts; ``"task"`` means
    the primary-score unit of the task it is computed on (accuracy, nats per token...), see :data:`TASK_UNIT`.

    Every field but ``unit`` is required. ``unit`` defaults to ``""``, which tables, JSON and plots read as
    ``"task"`` (the task's primary-score unit, e.g. ``acc``); give a word (``"ratio"``, ``"p-value"``) when the
    number is not in its task's unit, so axes and ``[unit]`` headers say so.
    """

    name: str
    description: str
    higher_is_better: bool | None
    low: float | None
    high: float | None
    scope: str  # "task" | "group" | "run"
    compute: Callable[["MetricInputs", Mapping[str, Any]], dict[str, dict[str, Any]]]
    unit: str = ""

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"metric {self.name!r}: scope must be one of {SCOPES}, got {self.scope!r}")

    def range_text(self) -> str:
        if self.low is None and self.high is None and self.higher_is_better is None:
            return "-"  # not a number (e.g. a group name)
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]"

    def list_columns(self, verbose: bool = False) -> dict[str, str]:
        """Extra columns for ``chainforget list metrics``."""
        direction = {True: "yes", False: "no", None: "-"}[self.higher_is_better]
        columns = {"higher is better": direction, "range": self.range_text(), "unit": self.unit or "-"}
        if verbose:
            columns["scope"] = self.scope
        return columns


@dataclass(frozen=True)
class ExampleView:
    """One eval task's per-example scores aligned across stages: ``values[j, t]`` (NaN = not evaluated).

    ``ids`` are sorted, so every number built from a view is independent of the order records were read in.
    """

    task: str
    ids: tuple[str, ...]
    groups: tuple[str, ...]  # group of each example
    values: Any  # numpy float64 array [n_examples, n_stages]
    clusters: tuple[str, ...] | None = None  # template (or declared cluster) of each example; None = independent

    def group_names(self) -> list[str]:
        return sorted(set(self.groups))


@dataclass(frozen=True)
class MetricInputs:
    """Everything a metric may read: records, run layout, and the matrices built once from the records."""

    records: Sequence[Mapping[str, Any]]
    task_info: Mapping[str, Mapping[str, Any]]
    stages: tuple[str, ...]
    eval_tasks: tuple[str, ...]
    views: Mapping[str, ExampleView]
    score_matrix: list[list[float | None]]  # [stage][eval task]
    group_score_matrix: dict[str, dict[str, list[float | None]]]
    group_sizes: dict[str, dict[str, int]]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def last(self) -> int:
        """T: the last score-matrix row (an extra stage such as safety re-tuning when a strategy adds one)."""
        return len(self.stages) - 1

    def score(self, task: str, stage: int) -> float | None:
        return self.score_matrix[stage][self.eval_tasks.index(task)]

    def unit(self, task: str) -> str:
        """The task's score unit: ``task_info[task]["unit"]``, else its primary metric's name (e.g. ``acc``)."""
        info = self.task_info.get(task, {})
        return str(info.get("unit") or info.get("primary_metric") or "score")

    def sign(self, task: str) -> float:
        """+1 when the task's primary score is higher-is-better, else -1: ``sign * score`` is "higher is better"."""
        return 1.0 if self.task_info.get(task, {}).get("higher_is_better", True) else -1.0

    def trained_at(self, task: str) -> int | None:
        value = self.task_info.get(task, {}).get("trained_at")
        return None if value is None else int(value)

    def trained_tasks(self) -> list[str]:
        """Evaluated tasks trained somewhere in the chain, in training order."""
        tasks = [t for t in self.eval_tasks if self.trained_at(t) is not None]
        return sorted(tasks, key=lambda t: (self.trained_at(t), t))

    def forgetting_tasks(self) -> list[str]:
        """Trained tasks with at least one stage after their training (forgetting is defined for these)."""
        return [t for t in self.trained_tasks() if self.trained_at(t) < self.last]

    def eval_only_tasks(self) -> list[str]:
        return [t for t in self.eval_tasks if self.trained_at(t) is None]

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """Share expensive intermediate results (bootstrap resamples) between the metrics of one computation."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]
