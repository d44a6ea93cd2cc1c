"""What each reported number is, computed from runs: the cells and differences that ``leaderboard``, ``compare``,
``findings`` and ``plot`` print, through the one inference engine (``inference.py``).

A report chooses which runs answer which question and formats the :class:`~chainforget.metrics.inference.Estimate`
it gets back; it never resamples or combines numbers itself. So the same runs and the same metric give the same
number and interval in every table:

- :func:`stored_cell`: a metric's stored per-run entries over the seeds of one setting (``inference.cell``);
- :func:`final_cell`: a task's last-stage score over seeds (no stored interval: one seed has none);
- :func:`paired_difference`: a method minus a baseline, paired by seed and example (``inference.difference``);
- :func:`order_asymmetry`: relative forgetting of the first task of one order minus that of the other
  (``inference.ratio_difference``);
- :func:`spread_over_seeds`: the calibrated between-group spread of several seeds' forgetting (``metrics.spread``),
  with its resamples keyed by the runs themselves.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from chainforget.errors import ConfigError, DataError
from chainforget.metrics import effects, inference
from chainforget.metrics import spread as spread_stats
from chainforget.metrics.compute import build_inputs
from chainforget.metrics.groups import forgetting_bounds
from chainforget.metrics.inference import Estimate
from chainforget.metrics.uncertainty import paired_differences

PER_EXAMPLE = ("forgetting", "drift", "final")  # quantities whose per-example values are known from the records


class RunView:
    """One run's stored result and per-example views (the metrics room's), indexed by task."""

    def __init__(self, run: dict):
        if not isinstance(run, dict) or not isinstance(run.get("result"), dict):
            raise ConfigError("reports need runs loaded with chainforget.metrics.compute.read_run")
        self.result = run["result"]
        self.where = run.get("run_dir") or self.result.get("run_id", "?")
        if not run.get("records"):
            raise DataError(f"{self.where} has no evaluation records; this report needs them: rerun the run to "
                            f"write them")
        self.run_id = str(self.result.get("run_id") or self.where)
        self.seed = self.result.get("spec", {}).get("seed")
        self.inputs = build_inputs(run["records"], self.result["task_info"], self.result["stages"],
                                   self.result.get("eval_tasks"))
        self.last = self.inputs.last

    def kind(self, task: str) -> str | None:
        return self.result.get("task_info", {}).get(task, {}).get("kind")

    def first_task(self) -> str | None:
        tasks = self.result.get("tasks") or self.result.get("spec", {}).get("chain") or []
        return tasks[0] if tasks else None

    def entry(self, metric: str, key: str) -> dict:
        entry = self.result.get("metrics", {}).get(metric, {}).get(key)
        return entry if isinstance(entry, dict) else {}

    def per_example(self, metric: str, task: str):
        """(ids, values, groups, clusters) of the example-level quantity whose mean is ``metric`` (``forgetting``,
        ``drift``, ``final``, or ``relative_forgetting``: values ``[n, 2]`` = forgetting and gain), or None."""
        if task not in self.inputs.views:
            return None
        view = self.inputs.views[task]
        trained_at = self.inputs.trained_at(task)
        sign = self.inputs.sign(task)
        if metric == "final":
            keep = ~np.isnan(view.values[:, self.last])
            values = view.values[keep, self.last]
        elif metric == "relative_forgetting":
            if trained_at is None or trained_at >= self.last:
                return None
            cols = view.values[:, [trained_at - 1, trained_at, self.last]]
            keep = ~np.isnan(cols).any(axis=1)
            values = sign * np.stack([cols[keep, 1] - cols[keep, 2], cols[keep, 1] - cols[keep, 0]], axis=1)
        else:
            before = (0 if trained_at is None else None) if metric == "drift" else \
                (trained_at if trained_at is not None and trained_at < self.last else None)
            if before is None:
                return None
            values, keep = paired_differences(view.values, before, self.last, sign)
        if not keep.any():
            return None
        ids = [i for i, k in zip(view.ids, keep) if k]
        groups = [g for g, k in zip(view.groups, keep) if k]
        clusters = None if view.clusters is None else [c for c, k in zip(view.clusters, keep) if k]
        return ids, values, groups, clusters


def _by_seed(per_seed: Mapping[Any, RunView]) -> list[RunView]:
    return [v for _, v in sorted(per_seed.items(), key=lambda p: str(p[0]))]


def stored_cell(results: Sequence[dict], metric: str, key: str, bounds=(None, None), unit: str | None = None
                ) -> Estimate:
    """A registered metric's stored entries over the runs (seeds) of one cell: ``inference.cell``. One run keeps
    its stored p (the group test of biased_forgetting) and no other: a percentile interval implies no exact test."""
    entries, reason, n, p, unbounded = [], None, None, None, None
    for result in results:
        entry = result.get("metrics", {}).get(metric, {}).get(key)
        entry = entry if isinstance(entry, dict) else {}
        entries.append((entry.get("value"), entry.get("ci_low"), entry.get("ci_high")))
        reason = reason or entry.get("missing")
        if entry.get("value") is not None and entry.get("unbounded"):
            unbounded = str(entry["unbounded"]) if len(results) == 1 else "both"
        elif len(results) == 1 and entry.get("value") is not None and (entry.get("ci_low") is None) != (
                entry.get("ci_high") is None):  # one finite end (a spread with no finite high end)
            unbounded = "high" if entry.get("ci_high") is None else "low"
        if len(results) == 1:
            n = entry.get("n") if isinstance(entry.get("n"), int) else None
            p = entry.get("p") if isinstance(entry.get("p"), (int, float)) else None
    est = inference.cell(entries, bounds, unit=unit, n=n,
                         missing=str(reason) if reason else f"no {metric} value for {key} in these runs")
    if len(results) == 1 and est.value is not None:
        est = replace(est, p=p)  # one run: its metric's own test where it has one (the group test), else none
    if unbounded == "both" and est.value is not None:  # a run the data cannot bound: the cell cannot either
        est = replace(est, ci_low=None, ci_high=None, p=None, unbounded=unbounded)
    elif unbounded and est.value is not None:
        est = replace(est, unbounded=unbounded)
    return est


def final_score(result: dict, task: str) -> float | None:
    """The task's score in the last score-matrix row, or None."""
    try:
        value = result["score_matrix"][-1][result["eval_tasks"].index(task)]
    except (KeyError, IndexError, ValueError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def final_cell(results: Sequence[dict], task: str, unit: str | None = None,
               per_seed: Mapping[Any, RunView] | None = None) -> Estimate:
    """A task's final score over seeds. From the records (``per_seed`` views): the mean over seeds and examples with
    the joint cluster covariance and the between-seed variance (``inference.difference`` of one method); from bare
    results: the stored score-matrix values (one seed: no interval, nothing stored gives one)."""
    if per_seed is not None:
        vectors = [v for view in _by_seed(per_seed) if (v := view.per_example("final", task))]
        aligned = inference.align(vectors) if len(vectors) == len(per_seed) else None
        if aligned is not None:
            values, groups, clusters = aligned
            return inference.difference(values, None, groups, clusters, unit=unit)
    return inference.cell([(final_score(r, task), None, None) for r in results], unit=unit,
                          missing=f"no final score for {task} in these runs")


def paired_difference(mine: Mapping[Any, RunView], base: Mapping[Any, RunView], metric: str, task: str,
                      unit: str | None = None) -> Estimate:
    """``metric`` (forgetting, drift, final) of ``mine`` minus ``base``, paired by seed and by example: the seeds
    both sets have, on the examples every one of those runs scored (``inference.difference``)."""
    seeds = sorted((s for s in mine if s in base), key=str)
    vectors = []
    for s in seeds:
        a, b = mine[s].per_example(metric, task), base[s].per_example(metric, task)
        if a is not None and b is not None:
            vectors += [a, b]
    if not vectors:
        return inference.missing_estimate(f"no seed with {metric} of {task} in both sets", 0, unit)
    aligned = inference.align(vectors)
    if aligned is None:
        return inference.missing_estimate("the two sets share no evaluation example", len(vectors) // 2, unit)
    values, groups, clusters = aligned
    return inference.difference(values[0::2], values[1::2], groups, clusters, unit=unit)


def task_ratio(per_seed: Mapping[Any, RunView], task: str) -> inference.Ratio | None:
    """The seed-averaged relative forgetting of ``task`` (forgetting / gain) with its covariances, or None."""
    vectors = [v for view in _by_seed(per_seed) if (v := view.per_example("relative_forgetting", task))]
    aligned = inference.align(vectors) if vectors else None
    if aligned is None:
        return None
    values, groups, clusters = aligned  # [S, n, 2]
    return inference.ratio(values[:, :, 0], values[:, :, 1], groups, clusters)


def order_asymmetry(first: Mapping[Any, RunView], first_task: str, second: Mapping[Any, RunView],
                    second_task: str, bounds=(None, None)) -> Estimate:
    """Relative forgetting of ``first_task`` in the ``first`` runs minus that of ``second_task`` in the ``second``
    runs: Fieller per ratio, MOVER for the difference (``inference.ratio_difference``)."""
    ratios = [task_ratio(first, first_task), task_ratio(second, second_task)]
    if None in ratios:
        return inference.missing_estimate("no records of a trained task with a later stage", 0)
    return inference.ratio_difference(*ratios, bounds=bounds)


def clustered_over_seeds(vectors: list, min_group_size: int) -> spread_stats.Clustered | None:
    """Several seeds' aligned per-example values collapsed to clusters (metrics.spread), over groups with at least
    ``min_group_size`` examples; None with fewer than two such groups."""
    aligned = inference.align(vectors)
    if aligned is None:
        return None
    values, groups, clusters = aligned
    names, counts = np.unique(np.array(groups, dtype=object), return_counts=True)
    used = set(names[counts >= min_group_size].tolist())
    if len(used) < 2:
        return None
    mask = np.array([g in used for g in groups])
    return spread_stats.collapse(values[:, mask], [g for g, m in zip(groups, mask) if m],
                                 None if clusters is None else [c for c, m in zip(clusters, mask) if m])


def forgetting_vectors(per_seed: Mapping[Any, RunView], task: str) -> list:
    return [vec for view in _by_seed(per_seed) if (vec := view.per_example("forgetting", task))]


def spread_over_seeds(per_seed: Mapping[Any, RunView], task: str, min_group_size: int, n_perm: int, seed: int
                      ) -> tuple[dict | None, spread_stats.Clustered | None]:
    """(the calibrated spread of several seeds' forgetting, the clusters it used): ``metrics.spread`` with
    permutations keyed by the runs, so compare and findings print the same spread, interval and p."""
    cl = clustered_over_seeds(forgetting_vectors(per_seed, task), min_group_size)
    if cl is None:
        return None, None
    key = ("biased_forgetting", task, *sorted(v.run_id for v in per_seed.values()))
    return spread_stats.spread(cl, n_perm, inference.cell_rng(seed, *key)), cl


def spread_cell(per_seed: Mapping[Any, RunView], task: str, min_group_size: int, n_perm: int, seed: int,
                unit: str | None = None) -> Estimate:
    """:func:`spread_over_seeds` as an Estimate (value, interval, group p; an open high end flagged), the cell the
    leaderboard and compare print for several seeds' biased forgetting."""
    result, _ = spread_over_seeds(per_seed, task, min_group_size, n_perm, seed)
    if result is None:
        return inference.missing_estimate(f"fewer than 2 groups with {min_group_size} or more eval examples",
                                          len(per_seed), unit)
    return Estimate(result["value"], result["ci_low"], result["ci_high"], result["p"], seeds=len(per_seed),
                    unit=unit, unbounded="high" if result["ci_high"] is None else None)


def group_intervals_over_seeds(per_seed: Mapping[Any, RunView], cl: spread_stats.Clustered, task: str, n_boot: int,
                               seed: int) -> spread_stats.GroupIntervals:
    """Per-group simultaneous intervals over seeds (``spread.group_intervals``), clipped to the possible range of a
    mean forgetting (``groups.forgetting_bounds``), a group with too few templates saying so; resamples keyed by the
    runs."""
    key = ("group_forgetting", task, *sorted(v.run_id for v in per_seed.values()))
    bounds = forgetting_bounds(next(iter(per_seed.values())).inputs, task)
    return spread_stats.group_intervals(cl, n_boot, inference.cell_rng(seed, *key), bounds=bounds)


def restrict(cl: spread_stats.Clustered, groups: Sequence[str]) -> spread_stats.Clustered | None:
    """The clusters of the named groups only (the ones a stored spread compared); None with fewer than two."""
    keep_codes = [i for i, name in enumerate(cl.names) if name in set(groups)]
    if len(keep_codes) < 2:
        return None
    mask = np.isin(cl.group, keep_codes)
    remap = {old: new for new, old in enumerate(keep_codes)}
    return spread_stats.Clustered(tuple(cl.names[i] for i in keep_codes),
                                  np.array([remap[g] for g in cl.group[mask]], dtype=np.int64), cl.sizes[mask],
                                  cl.totals[:, mask], cl.pooled_var)


def spread_mde(per_seed: Mapping[Any, RunView], task: str, groups: Sequence[str], min_group_size: int
               ) -> float | None:
    """The minimum detectable spread (``effects.spread_mde``) over ``groups``, from the seeds' forgetting."""
    cl = clustered_over_seeds(forgetting_vectors(per_seed, task), min_group_size)
    cl = None if cl is None else restrict(cl, groups)
    return None if cl is None else effects.spread_mde(spread_stats.group_moments(cl)[1])


def group_sizes(per_seed: Mapping[Any, RunView], task: str) -> dict[str, int]:
    """Examples per group on the seeds' common examples."""
    aligned = inference.align(forgetting_vectors(per_seed, task))
    if aligned is None:
        return {}
    names, counts = np.unique(np.array(aligned[1], dtype=object), return_counts=True)
    return {str(g): int(c) for g, c in zip(names, counts)}


def stored_difference(first: Sequence[dict], first_key: str, second: Sequence[dict], second_key: str, metric: str
                      ) -> Estimate:
    """``metric`` of ``first_key`` in the ``first`` runs minus that of ``second_key`` in the ``second`` runs, from
    stored entries (different runs and examples: variance parts add, ``effects.Effect.minus``)."""
    sides = []
    for results, key in ((first, first_key), (second, second_key)):
        entries = [(e.get("value"), e.get("ci_low"), e.get("ci_high")) for r in results
                   if isinstance(e := r.get("metrics", {}).get(metric, {}).get(key), dict)
                   and isinstance(e.get("value"), (int, float))]
        if not entries:
            return inference.missing_estimate(f"no {metric} value for {key}", len(results))
        sides.append(effects.from_entries(entries))
    diff = sides[0].minus(sides[1])
    low, high = diff.interval()
    return Estimate(diff.value, low, high, diff.pvalue(), diff.mde(), diff.se, None, diff.n_seeds)
