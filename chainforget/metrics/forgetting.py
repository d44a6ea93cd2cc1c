"""Forgetting and transfer along a chain: forgetting, relative_forgetting, max_forgetting, drift, average_score,
bwt, fwt.

``R[t][i]`` is the score matrix, ``T`` its last row, task A trained at row ``a``. Signs are chosen so that a
positive forgetting/drift always means "got worse": for a lower-is-better primary score the difference is negated
(``sign = -1``). See docs/metrics.md for the exact formulas.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from chainforget.metrics import inference
from chainforget.metrics.base import DEFAULT_OPTIONS, MetricInputs, missing
from chainforget.metrics.uncertainty import Bootstrap, bootstrap, paired_differences, percentile_ci, task_rng


def option(options: Mapping[str, Any], name: str) -> Any:
    return options.get(name, DEFAULT_OPTIONS[name])


def eligible_groups(inputs: MetricInputs, task: str, options: Mapping[str, Any]) -> list[str]:
    """Groups with at least ``min_group_size`` eval examples (the ones biased forgetting compares)."""
    floor = int(option(options, "min_group_size"))
    return sorted(g for g, n in inputs.group_sizes.get(task, {}).items() if n >= floor)


def kept(view, keep: np.ndarray) -> tuple[list[str], list[str] | None]:
    """Group and cluster labels of the examples in ``keep``."""
    labels = [g for g, k in zip(view.groups, keep) if k]
    clusters = None if view.clusters is None else [c for c, k in zip(view.clusters, keep) if k]
    return labels, clusters


def task_bootstrap(inputs: MetricInputs, task: str, before: int, after: int, options: Mapping[str, Any]
                   ) -> tuple[Bootstrap, int]:
    """The (cached) paired, group-stratified cluster bootstrap of ``sign * (x[before] - x[after])`` for one task."""
    n_boot, seed = int(option(options, "n_boot")), int(option(options, "seed"))

    def build():
        view = inputs.views[task]
        diffs, keep = paired_differences(view.values, before, after, inputs.sign(task))
        labels, clusters = kept(view, keep)
        rng = task_rng(seed, task, before * 1000 + after)
        return bootstrap(diffs, labels, n_boot, rng, clusters), int(diffs.size)

    return inputs.cached(("bootstrap", task, before, after, n_boot, seed), build)


def _signed(inputs: MetricInputs, task: str, stage: int) -> float | None:
    value = inputs.score(task, stage)
    return None if value is None else inputs.sign(task) * value


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def drop(inputs: MetricInputs, task: str, ref: int) -> list[float | None]:
    """``sign * (R[ref] - R[t])`` for every stage t (None before ref): forgetting measured at every later stage."""
    base = _signed(inputs, task, ref)
    return [None if t < ref else _diff(base, _signed(inputs, task, t)) for t in range(inputs.last + 1)]


def _with_ci(inputs: MetricInputs, task: str, ref: int, options: Mapping[str, Any], **extra: Any) -> dict:
    by_stage = drop(inputs, task, ref)
    value = by_stage[inputs.last]
    if value is None:
        return missing(f"no score for {task!r} at stage {ref} or {inputs.last}", by_stage=by_stage, **extra)
    boot, n = task_bootstrap(inputs, task, ref, inputs.last, options)
    low, high = percentile_ci(boot.overall)
    return {"value": value, "ci_low": low, "ci_high": high, "n": n, "by_stage": by_stage, **extra}


def forgetting(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``forgetting[A] = sign * (R[a][A] - R[T][A])`` for every trained task with a later stage, with a 95% CI."""
    return {task: _with_ci(inputs, task, inputs.trained_at(task), options, stage_trained=inputs.trained_at(task))
            for task in inputs.forgetting_tasks()}


def drift(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``drift[i] = sign * (R[0][i] - R[T][i])`` for eval-only tasks (never trained in the chain)."""
    if inputs.last < 1:
        return {}
    return {task: _with_ci(inputs, task, 0, options) for task in inputs.eval_only_tasks()}


def max_forgetting(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``max_{a <= t < T} sign*R[t][A] - sign*R[T][A]`` (Chaudhry et al.; what Avalanche and mammoth report)."""
    out = {}
    for task in inputs.forgetting_tasks():
        a, last = inputs.trained_at(task), inputs.last
        final = _signed(inputs, task, last)
        earlier = [(_signed(inputs, task, t), t) for t in range(a, last)]
        earlier = [(v, t) for v, t in earlier if v is not None]
        if final is None or not earlier:
            out[task] = missing(f"no score for {task!r} at stage {last} or between stages {a} and {last - 1}")
            continue
        best, stage = max(earlier, key=lambda vt: (vt[0], -vt[1]))
        out[task] = {"value": best - final, "best_stage": stage}
    return out


def by_unit(inputs: MetricInputs, tasks: list[str]) -> dict[str, list[str]]:
    """Tasks grouped by score unit, in order: a cross-task mean only ever averages numbers of one unit."""
    out: dict[str, list[str]] = {}
    for task in tasks:
        out.setdefault(inputs.unit(task), []).append(task)
    return out


def _per_unit(inputs: MetricInputs, tasks: list[str], compute, what: str) -> dict:
    """``{unit: compute(tasks of that unit)}`` and ``overall``: the same entry when every task shares one unit, else
    missing (numbers in different units are never averaged)."""
    units = by_unit(inputs, tasks)
    out = {unit: {**compute(group), "unit": unit} for unit, group in units.items()}
    if len(units) == 1:
        out["overall"] = next(iter(out.values()))
    else:
        out["overall"] = missing(f"the {what} tasks are scored in different units ({', '.join(units)}); "
                                 f"see the per-unit entries or relative_forgetting (unit-free)", units=list(units))
    return out


def average_score(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``mean_i R[T][i]`` over higher-is-better eval tasks of one unit (keyed by unit; ``overall`` when all share one
    unit; lower-is-better tasks are listed in ``excluded``)."""

    def compute(tasks):
        by_stage = []
        for t in range(inputs.last + 1):
            row = [inputs.score(task, t) for task in tasks]
            by_stage.append(None if any(v is None for v in row) else float(np.mean(row)))
        entry = {"value": by_stage[-1], "by_stage": by_stage, "tasks": tasks}
        if entry["value"] is None:
            entry["missing"] = f"some eval task has no score at stage {inputs.last}"
        return entry

    tasks = [t for t in inputs.eval_tasks if inputs.sign(t) > 0]
    excluded = [t for t in inputs.eval_tasks if inputs.sign(t) < 0]
    if not tasks:
        return {"overall": missing("no eval task has a higher-is-better primary score", excluded=excluded)}
    out = _per_unit(inputs, tasks, compute, "eval")
    for entry in out.values():
        entry["excluded"] = excluded  # lower-is-better scores are listed, never averaged with higher-is-better ones
    return out


def bwt(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """Backward transfer ``mean_A sign*(R[T][A] - R[a][A])`` over trained tasks with a later stage (= -mean forgetting),
    per unit (``overall`` when all share one unit).

    In a plain chain these are all trained tasks but the last; a strategy's extra stage brings the last one in.
    """
    tasks = inputs.forgetting_tasks()
    if not tasks:
        return {"overall": missing("no trained task is followed by a later stage")}

    def compute(group):
        values = [drop(inputs, t, inputs.trained_at(t))[inputs.last] for t in group]
        if any(v is None for v in values):
            return missing("a trained task has no score at its training stage or the last stage", tasks=group)
        samples = [task_bootstrap(inputs, t, inputs.trained_at(t), inputs.last, options)[0].overall for t in group]
        low, high = percentile_ci(-np.mean(samples, axis=0))  # tasks use independent examples: resamples combine
        return {"value": -float(np.mean(values)), "ci_low": low, "ci_high": high, "tasks": group}

    return _per_unit(inputs, tasks, compute, "trained")


def relative_forgetting(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``forgetting[A] / gain[A]``, ``gain = sign * (R[a][A] - R[a-1][A])`` (what A's own stage added): the share of
    the gain lost, unit-free. Missing when the gain is not positive. The 95% interval is Fieller's
    (``inference.ratio``: the cluster covariance of forgetting and gain on the same examples), which follows the
    ratio's skew; when the gain is not clearly positive it is unbounded (both ends null, ``"unbounded": "both"``)."""
    out = {}
    for task in inputs.forgetting_tasks():
        a, last, sign = inputs.trained_at(task), inputs.last, inputs.sign(task)
        forgot, gain = drop(inputs, task, a)[last], _diff(_signed(inputs, task, a), _signed(inputs, task, a - 1))
        extra = {"gain": gain, "forgetting": forgot, "stage_trained": a}
        if forgot is None or gain is None:
            out[task] = missing(f"no score for {task!r} at stage {a - 1}, {a} or {last}", **extra)
            continue
        if gain <= 0:
            out[task] = missing(f"training on {task!r} did not raise its score (gain {gain:.4g} <= 0)", **extra)
            continue
        values = inputs.views[task].values
        keep = ~np.isnan(values[:, [a - 1, a, last]]).any(axis=1)
        labels, clusters = kept(inputs.views[task], keep)
        ratio = inference.ratio(sign * (values[keep, a] - values[keep, last]),
                                sign * (values[keep, a] - values[keep, a - 1]), labels, clusters)
        low, high = ratio.interval()
        entry = {"value": forgot / gain, "ci_low": low, "ci_high": high, "n": int(keep.sum()), **extra}
        if not (np.isfinite(low) and np.isfinite(high)):
            entry.update({"ci_low": None, "ci_high": None, "unbounded": "both"})
        out[task] = entry
    return out


def fwt(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """Forward transfer ``fwt[A] = sign*(R[a-1][A] - R[0][A])`` for tasks trained at a >= 2, and their mean."""
    out = {}
    for task in inputs.trained_tasks():
        a = inputs.trained_at(task)
        if a < 2:
            continue
        value = _diff(_signed(inputs, task, a - 1), _signed(inputs, task, 0))
        out[task] = missing(f"no score for {task!r} at stage 0 or {a - 1}") if value is None else {"value": value}
    values = [e["value"] for e in out.values()]
    if values:
        out["overall"] = (missing("a task's forward transfer is undefined") if None in values
                          else {"value": float(np.mean(values))})
    return out


def matrix_drop(row: list[float | None], ref: int, last: int, higher_is_better: bool = True) -> float | None:
    """``sign * (row[ref] - row[last])`` from a stored score-matrix column (or a group's row): forgetting when ``ref``
    is the training row, drift when it is 0. For readers of result.json that have no stored metric entry."""
    if ref is None or len(row) <= max(ref, last) or row[ref] is None or row[last] is None:
        return None
    return (1.0 if higher_is_better else -1.0) * (row[ref] - row[last])

