"""Score matrices from evaluation records: ``R[t][i]`` overall, per group, and per example aligned across stages.

``R[t][i]`` is the mean over task i's eval examples of ``scores[primary]`` at stage t (its records' ``step`` field). Every matrix here is built from
the per-example view (:class:`~chainforget.metrics.base.ExampleView`), with ids sorted, so the numbers do not depend on
record order. A stage/task (or group) combination without records is ``None``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from chainforget.errors import DataError
from chainforget.metrics.base import ExampleView

DEFAULT_CLUSTER = "template"  # BBQ's meta.template: examples generated from one template are not independent


def _primary_of(record: Mapping[str, Any], primary: Mapping[str, str] | None) -> str:
    task = record["task"]
    if primary and primary.get(task):
        return primary[task]
    if record.get("primary"):
        return record["primary"]
    raise DataError(f"record {record.get('id')!r} of task {task!r} names no primary metric; "
                    f"store 'primary' in every record or give task_info a primary_metric")


def _value(record: Mapping[str, Any], name: str) -> float:
    scores = record.get("scores") or {}
    if name not in scores:
        raise DataError(f"record {record.get('id')!r} of task {record['task']!r} has no score {name!r}; "
                        f"its scores are {sorted(scores)}")
    value = scores[name]
    return float("nan") if value is None else float(value)


def cluster_of(record: Mapping[str, Any], field: str | None) -> str | None:
    """The example's cluster: ``meta[field]`` or the record's ``field`` (default field: BBQ's ``template``)."""
    field = field or DEFAULT_CLUSTER
    if field.startswith("meta."):
        field = field[5:]
    value = (record.get("meta") or {}).get(field, record.get(field))
    return None if value is None or value == "" else str(value)


def build_views(records: Iterable[Mapping[str, Any]], tasks: Sequence[str], n_stages: int | None = None,
                primary: Mapping[str, str] | None = None,
                cluster_fields: Mapping[str, str | None] | None = None) -> dict[str, ExampleView]:
    """Per task, the examples' primary scores aligned across stages (rows = sorted ids, columns = stages), with each
    example's group and cluster (``cluster_fields[task]``, a task-declared field, else ``meta.template``)."""
    wanted = set(tasks)
    cells: dict[str, dict[str, dict[int, float]]] = {t: {} for t in tasks}
    groups: dict[str, dict[str, str]] = {t: {} for t in tasks}
    clusters: dict[str, dict[str, str | None]] = {t: {} for t in tasks}
    cluster_fields = cluster_fields or {}
    max_stage = -1
    for rec in records:
        task = rec["task"]
        if task not in wanted:
            continue
        stage = int(rec["step"])
        if stage < 0 or (n_stages is not None and stage >= n_stages):
            raise DataError(f"record {rec.get('id')!r} of task {task!r} has step {stage}, outside the "
                            f"{n_stages} stages of this run; the records and result.json do not match")
        max_stage = max(max_stage, stage)
        ex_id = str(rec["id"])
        per_example = cells[task].setdefault(ex_id, {})
        if stage in per_example:
            raise DataError(f"two records for example {ex_id!r} of task {task!r} at stage {stage}; "
                            f"remove the duplicate record file")
        per_example[stage] = _value(rec, _primary_of(rec, primary))
        groups[task].setdefault(ex_id, str(rec.get("group") or ""))
        clusters[task].setdefault(ex_id, cluster_of(rec, cluster_fields.get(task)))
    n = n_stages if n_stages is not None else max_stage + 1
    views = {}
    for task in tasks:
        ids = sorted(cells[task])
        values = np.full((len(ids), max(n, 0)), np.nan)
        for j, ex_id in enumerate(ids):
            for stage, value in cells[task][ex_id].items():
                values[j, stage] = value
        labels = [clusters[task][i] for i in ids]
        views[task] = ExampleView(task, tuple(ids), tuple(groups[task][i] for i in ids), values,
                                  None if all(c is None for c in labels) else
                                  tuple(i if c is None else c for i, c in zip(ids, labels)))
    return views


def _column_means(values: np.ndarray) -> list[float | None]:
    """Mean of each stage over the examples evaluated there; None where none was."""
    out = []
    for t in range(values.shape[1]):
        col = values[:, t]
        col = col[~np.isnan(col)]
        out.append(float(col.mean()) if col.size else None)
    return out


def matrix_from_views(views: Mapping[str, ExampleView], tasks: Sequence[str], n_stages: int
                      ) -> list[list[float | None]]:
    columns = [_column_means(views[t].values) if t in views else [None] * n_stages for t in tasks]
    return [[columns[i][t] for i in range(len(tasks))] for t in range(n_stages)]


def group_matrix_from_views(views: Mapping[str, ExampleView]) -> dict[str, dict[str, list[float | None]]]:
    out = {}
    for task, view in views.items():
        labels = np.array(view.groups, dtype=object)
        out[task] = {g: _column_means(view.values[labels == g]) for g in view.group_names()}
    return out


def group_sizes_from_views(views: Mapping[str, ExampleView]) -> dict[str, dict[str, int]]:
    return {task: {g: int(sum(1 for x in view.groups if x == g)) for g in view.group_names()}
            for task, view in views.items()}


def score_matrix(records: Iterable[Mapping[str, Any]], tasks: Sequence[str], n_stages: int | None = None,
                 primary: Mapping[str, str] | None = None) -> list[list[float | None]]:
    """``R[t][i]``: rows = stages 0..S, columns = ``tasks``; None where a stage/task has no records."""
    views = build_views(records, tasks, n_stages, primary)
    n = n_stages if n_stages is not None else max((v.values.shape[1] for v in views.values()), default=0)
    return matrix_from_views(views, tasks, n)


def group_score_matrix(records: Iterable[Mapping[str, Any]], tasks: Sequence[str], n_stages: int | None = None,
                       primary: Mapping[str, str] | None = None) -> dict[str, dict[str, list[float | None]]]:
    """``{task: {group: [R_g[t] for every stage]}}``."""
    return group_matrix_from_views(build_views(records, tasks, n_stages, primary))


def group_sizes(records: Iterable[Mapping[str, Any]], tasks: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{task: {group: number of distinct eval examples}}``."""
    return group_sizes_from_views(build_views(records, tasks))
