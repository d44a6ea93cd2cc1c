"""Per-group forgetting and biased forgetting: did the chain make the model forget more for some groups?

``forgetting_g[A] = sign * (R_g[a][A] - R_g[T][A])`` on group g's slice of the same eval examples. Biased
forgetting compares only groups with at least ``min_group_size`` eval examples; smaller groups still get their own
``group_forgetting`` entry, flagged ``"small": true``, and are listed as excluded, never silently dropped.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from chainforget.metrics.base import MetricInputs, missing
from chainforget.metrics.forgetting import eligible_groups, option, task_bootstrap
from chainforget.metrics.uncertainty import paired_differences, percentile_ci, permutation_pvalue, task_rng

PERMUTATION_PURPOSE = 7_000_001


def _group_drop(inputs: MetricInputs, task: str, group: str) -> list[float | None]:
    a, sign = inputs.trained_at(task), inputs.sign(task)
    row = inputs.group_score_matrix[task][group]
    ref = row[a]
    return [None if t < a or ref is None or row[t] is None else sign * (ref - row[t]) for t in range(len(row))]


def _per_group(inputs: MetricInputs, task: str, options: Mapping[str, Any]) -> tuple[dict, list[str], list[str]]:
    """forgetting_g of every group, the eligible groups (big enough and defined) and the excluded ones."""
    values = {g: _group_drop(inputs, task, g)[inputs.last] for g in inputs.group_score_matrix.get(task, {})}
    big = set(eligible_groups(inputs, task, options))
    used = sorted(g for g in big if values[g] is not None)
    return values, used, sorted(g for g in values if g not in used)


def _spread_context(inputs: MetricInputs, task: str, options: Mapping[str, Any]):
    values, used, excluded = _per_group(inputs, task, options)
    floor = int(option(options, "min_group_size"))
    info = {"groups": used, "excluded_groups": excluded, "min_group_size": floor}
    if len(used) < 2:
        return None, info, values
    return used, info, values


def group_forgetting(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``forgetting_g[A]`` for every group of every trained task, keyed ``task/group``, with 95% CIs."""
    out = {}
    floor = int(option(options, "min_group_size"))
    for task in inputs.forgetting_tasks():
        boot, _ = task_bootstrap(inputs, task, inputs.trained_at(task), inputs.last, options)
        for group, n in sorted(inputs.group_sizes.get(task, {}).items()):
            by_stage = _group_drop(inputs, task, group)
            flags = {"n": n, "small": n < floor, "by_stage": by_stage}
            if by_stage[inputs.last] is None:
                out[f"{task}/{group}"] = missing(f"group {group!r} of {task!r} has no score at stage "
                                                 f"{inputs.trained_at(task)} or {inputs.last}", **flags)
                continue
            low, high = percentile_ci(boot.groups[group]) if group in boot.groups else (None, None)
            out[f"{task}/{group}"] = {"value": by_stage[inputs.last], "ci_low": low, "ci_high": high, **flags}
    return out


def _each_spread_task(inputs: MetricInputs, options: Mapping[str, Any], compute) -> dict:
    """``compute(task, used, info, values)`` for every forgetting task with at least 2 eligible groups; the rest
    are reported missing (with the group flags), never silently dropped."""
    out = {}
    for task in inputs.forgetting_tasks():
        used, info, values = _spread_context(inputs, task, options)
        out[task] = (missing("fewer than 2 groups with enough eval examples", **info) if used is None
                     else compute(task, used, info, values))
    return out


def biased_forgetting(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``max_g forgetting_g[A] - min_g forgetting_g[A]`` over groups with enough examples, with a 95% CI."""

    def compute(task, used, info, values):
        boot, _ = task_bootstrap(inputs, task, inputs.trained_at(task), inputs.last, options)
        value = max(values[g] for g in used) - min(values[g] for g in used)
        low, high, bias = bias_corrected_range_ci(boot.biased, value)
        return {"value": value, "ci_low": low, "ci_high": high, "bootstrap_bias": bias, **info}

    return _each_spread_task(inputs, options, compute)


def bias_corrected_range_ci(samples, value: float) -> tuple[float | None, float | None, float | None]:
    """Percentile CI of a max-minus-min statistic, shifted by its bootstrap bias and floored at 0.

    Resampling small groups inflates a range (the max of noisy means rises, the min falls), so the plain percentile
    interval of ``max_g - min_g`` sits above the estimate and can exclude it. Subtracting the bootstrap bias
    ``mean(samples) - value`` recentres it; a range is never negative, hence the floor.
    """
    if samples is None:
        return None, None, None
    arr = np.asarray(samples, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return None, None, None
    bias = float(arr.mean() - value)
    low, high = percentile_ci(arr)
    return max(0.0, low - bias), max(0.0, high - bias), bias


def biased_forgetting_std(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """Population standard deviation (ddof 0) of forgetting_g[A] over groups with enough examples."""
    return _each_spread_task(inputs, options, lambda task, used, info, values: {
        "value": float(np.std([values[g] for g in used])), **info})


def worst_group(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """The group with the largest forgetting_g[A] (first by name on ties); its value is the group name."""

    def compute(task, used, info, values):
        worst = max(used, key=lambda g: values[g])  # used is sorted: ties go to the first name
        return {"value": worst, "forgetting": values[worst], **info}

    return _each_spread_task(inputs, options, compute)


def worst_group_excess(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``max_g forgetting_g[A] - forgetting[A]``: how much more the worst-off group forgot than the whole task."""
    out = {}
    for task in inputs.forgetting_tasks():
        used, info, values = _spread_context(inputs, task, options)
        a, last = inputs.trained_at(task), inputs.last
        overall_a, overall_t = inputs.score(task, a), inputs.score(task, last)
        if used is None or overall_a is None or overall_t is None:
            out[task] = missing("fewer than 2 groups with enough eval examples or no overall score", **info)
            continue
        overall = inputs.sign(task) * (overall_a - overall_t)
        boot, _ = task_bootstrap(inputs, task, a, last, options)
        samples = np.stack([boot.groups[g] for g in used if g in boot.groups]).max(axis=0) - boot.overall
        low, high = percentile_ci(samples)
        out[task] = {"value": max(values[g] for g in used) - overall, "ci_low": low, "ci_high": high, **info}
    return out


def group_effect_pvalue(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """Permutation p-value of "forgetting does not depend on the group" (between-group sum of squares statistic)."""
    out = {}
    n_perm, seed = int(option(options, "n_boot")), int(option(options, "seed"))
    for task in inputs.forgetting_tasks():
        used, info, _ = _spread_context(inputs, task, options)
        if used is None:
            out[task] = missing("fewer than 2 groups with enough eval examples", **info)
            continue
        view = inputs.views[task]
        diffs, keep = paired_differences(view.values, inputs.trained_at(task), inputs.last, inputs.sign(task))
        labels = np.array([g for g, k in zip(view.groups, keep) if k], dtype=object)
        mask = np.isin(labels, used)
        p, observed = permutation_pvalue(diffs[mask], labels[mask], n_perm,
                                         task_rng(seed, task, PERMUTATION_PURPOSE))
        out[task] = {"value": p, "statistic": "between_group_ss", "observed": observed, "n_perm": n_perm, **info}
    return out
