"""Per-group and biased forgetting: did the chain make the model forget more for some groups?

``forgetting_g[A] = sign * (R_g[a][A] - R_g[T][A])`` on group g's slice of the same eval examples. The headline
``biased_forgetting`` is the noise-corrected between-group spread of ``forgetting_g`` (``spread.py``), reported with an
interval and the calibrated group-effect p-value from the same computation; ``max - min`` (``biased_forgetting_range``)
and the std stay as descriptive numbers. Only groups with at least ``min_group_size`` eval examples are compared;
smaller groups keep their own ``group_forgetting`` entry, flagged ``"small": true``, and are listed as excluded.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from chainforget.metrics import spread as spread_stats
from chainforget.metrics.base import MetricInputs, missing
from chainforget.metrics.forgetting import eligible_groups, kept, option, task_bootstrap
from chainforget.metrics.uncertainty import paired_differences, percentile_ci, task_rng

PERMUTATION_PURPOSE = 7_000_001
SIMULTANEOUS_PURPOSE = 7_000_002
METHOD = ("random-effects between-group SD (Paule-Mandel); test and interval from Q(tau^2) against a wild cluster "
          "bootstrap reference (plus the excess group x seed variance with seeds)")


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


def task_clustered(inputs: MetricInputs, task: str, used: list[str]) -> spread_stats.Clustered:
    """The paired differences of the task's eligible groups, collapsed to clusters (templates)."""
    view = inputs.views[task]
    diffs, keep = paired_differences(view.values, inputs.trained_at(task), inputs.last, inputs.sign(task))
    labels, clusters = kept(view, keep)
    mask = np.isin(np.array(labels, dtype=object), used)
    labels = [g for g, m in zip(labels, mask) if m]
    clusters = None if clusters is None else [c for c, m in zip(clusters, mask) if m]
    return spread_stats.collapse(diffs[mask], labels, clusters)


def task_spread(inputs: MetricInputs, task: str, used: list[str], options: Mapping[str, Any]) -> dict:
    """The (cached) spread analysis of one task: estimate, interval, p (see spread.py)."""
    n_perm, seed = int(option(options, "n_boot")), int(option(options, "seed"))

    def build():
        cl = task_clustered(inputs, task, used)
        return spread_stats.spread(cl, n_perm, task_rng(seed, task, PERMUTATION_PURPOSE))

    return inputs.cached(("spread", task, tuple(used), n_perm, seed), build)


def group_forgetting(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``forgetting_g[A]`` for every group of every trained task, keyed ``task/group``.

    Eligible groups get simultaneous 95% intervals (all hold together, ``ci: "simultaneous"``), so "group X forgot
    most" can be read from them, clipped to the possible range; a group with too few templates for an informative
    one gets none and says so in ``ci_missing``. Small groups get a pointwise bootstrap interval (``ci: "pointwise"``).
    """
    out = {}
    floor = int(option(options, "min_group_size"))
    n_boot, seed = int(option(options, "n_boot")), int(option(options, "seed"))
    for task in inputs.forgetting_tasks():
        boot, _ = task_bootstrap(inputs, task, inputs.trained_at(task), inputs.last, options)
        _, used, _ = _per_group(inputs, task, options)
        joint = {}
        if used:
            res = spread_stats.group_intervals(task_clustered(inputs, task, used), n_boot,
                                               task_rng(seed, task, SIMULTANEOUS_PURPOSE),
                                               bounds=forgetting_bounds(inputs, task))
            joint = {g: (None, None, res.critical, why) if why else (float(lo), float(hi), res.critical, None)
                     for g, lo, hi, why in zip(res.names, res.low, res.high, res.reasons)}
        for group, n in sorted(inputs.group_sizes.get(task, {}).items()):
            by_stage = _group_drop(inputs, task, group)
            flags = {"n": n, "small": n < floor, "by_stage": by_stage}
            if by_stage[inputs.last] is None:
                out[f"{task}/{group}"] = missing(f"group {group!r} of {task!r} has no score at stage "
                                                 f"{inputs.trained_at(task)} or {inputs.last}", **flags)
                continue
            if group in joint:
                low, high, crit, why = joint[group]
                extra = {"ci": "simultaneous", "critical_value": crit, **({"ci_missing": why} if why else {})}
            else:
                low, high = percentile_ci(boot.groups[group]) if group in boot.groups else (None, None)
                extra = {"ci": "pointwise"}
            out[f"{task}/{group}"] = {"value": by_stage[inputs.last], "ci_low": low, "ci_high": high, **flags, **extra}
    return out


def forgetting_bounds(inputs: MetricInputs, task: str) -> tuple[float | None, float | None]:
    """The possible range of a mean forgetting: [-1, 1] for 0/1 scores (accuracy), unbounded otherwise."""
    values = inputs.views[task].values
    finite = values[np.isfinite(values)]
    return (-1.0, 1.0) if finite.size and bool(np.all((finite == 0) | (finite == 1))) else (None, None)


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
    """The noise-corrected between-group SD of forgetting_g (the headline), its 95% interval and the group-effect p.

    The interval excludes 0 exactly when p < 0.05 (``zero_excluded``; a low end of 0 with p < 0.05 means the
    set is (0, high]). ``range`` (max - min) and ``std`` are descriptive only.
    """

    def compute(task, used, info, values):
        result = task_spread(inputs, task, used, options)
        observed = [values[g] for g in used]
        return {"value": result["value"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
                "p": result["p"], "zero_excluded": result["zero_excluded"], "range": max(observed) - min(observed),
                "std": float(np.std(observed)),
                "method": METHOD, **info}

    return _each_spread_task(inputs, options, compute)


def biased_forgetting_range(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """``max_g forgetting_g - min_g forgetting_g`` (descriptive: inflated by noise, no interval; see biased_forgetting)."""
    return _each_spread_task(inputs, options, lambda task, used, info, values: {
        "value": max(values[g] for g in used) - min(values[g] for g in used), **info})


def biased_forgetting_std(inputs: MetricInputs, options: Mapping[str, Any]) -> dict:
    """Population standard deviation (ddof 0) of forgetting_g[A] over groups with enough examples (descriptive)."""
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
    """p of "forgetting does not depend on the group": the studentized Q(0) of size-weighted group means against a
    wild cluster bootstrap with the null imposed; the same p that decides whether biased_forgetting's interval
    excludes 0."""

    def compute(task, used, info, values):
        result = task_spread(inputs, task, used, options)
        return {"value": result["p"], "statistic": "studentized_q", "observed": result["q"],
                "n_perm": int(option(options, "n_boot")), **info}

    return _each_spread_task(inputs, options, compute)
