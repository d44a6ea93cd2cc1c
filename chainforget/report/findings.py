"""``chainforget findings``: the paper's three questions answered from a set of runs, each with its minimum
detectable effect, so that "not significant" can be read as "absent" or as "too small a study".

1. **Order asymmetry.** Is safety forgotten more when it comes first? For every setting that has both orders of a
   safety/capability pair (chains with the same tasks, one starting with the safety task S, one with the capability
   task C), the difference ``m(S | S first) - m(C | C first)`` of a unit-free metric ``m`` (``relative_forgetting``
   by default: the share of what a task's own stage gained that the rest of the chain took away).
2. **Group dependence.** Does forgetting depend on the group? The calibrated between-group spread of a safety task's
   forgetting (interval and group-effect p), and per-group forgetting with simultaneous intervals.
3. **Mitigation.** Each strategy minus the baseline (naive) on safety forgetting and on final capability, paired by
   seed and example, and the Pareto set of (safety forgetting, final capability).

Every number comes from the metrics room's one engine (``metrics.estimates`` over ``metrics.inference``), the same
calls the leaderboard and compare make, so the same runs give the same numbers in all three: stored cells as the
leaderboard shows them, order asymmetry of relative forgetting by Fieller's interval per order and MOVER for the
difference (unbounded when a gain is not clearly positive), the spread over seeds, and paired differences with
seeds. Nothing is computed here beyond choosing which runs answer which question; ``findings_render`` turns the
result into text or HTML.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS as DEFAULTS
from chainforget.errors import ConfigError, unknown_name
from chainforget.metrics import effects, estimates
from chainforget.metrics.base import TASK_UNIT
from chainforget.metrics.compute import read_run
from chainforget.metrics.estimates import RunView
from chainforget.metrics.pareto import pareto_front
from chainforget.plugins import registries
from chainforget.report.tables import chain_label, grouping_fields, spec_label, strategy_labels, varying_fields

SCHEMA_ID = "chainforget.findings/1"
DEFAULT_METRIC = "relative_forgetting"


def _cells(runs: Sequence[Any]) -> dict[tuple[tuple[str, str], str], dict[Any, RunView]]:
    """Runs by (setting, chain) and seed; a setting is (the strategy with its differing hyper-parameters, the other
    fields that vary across the runs: finetune, learning rate...)."""
    views = [RunView(read_run(r) if isinstance(r, (str, os.PathLike)) else r) for r in runs]
    results = [v.result for v in views]
    fields = varying_fields(results)
    cells: dict[tuple[str, str], dict[Any, RunView]] = {}
    for label, view in zip(strategy_labels(results), views):
        extra = grouping_fields(view.result)
        setting = (label, " ".join(f"{k}={spec_label(extra.get(k))}" for k in fields))
        chain = chain_label(view.result)
        per_seed = cells.setdefault((setting, chain), {})
        if view.seed in per_seed:
            raise ConfigError(f"two runs of {_name(setting)} on chain {chain} with seed {view.seed} "
                              f"({per_seed[view.seed].where}, {view.where}); pass each run once")
        per_seed[view.seed] = view
    return cells


def _name(setting: tuple[str, str]) -> str:
    return " ".join(x for x in setting if x)


def _kind(view: RunView, task: str) -> str | None:
    return view.kind(task)


def _first(view: RunView) -> str | None:
    return view.first_task()


def _verdict(summary: dict, more: str, less: str, unit: str) -> str:
    """One sentence reading an effect against 0 and against its minimum detectable effect."""
    if summary.get("unbounded"):
        p = "" if summary["p"] is None else f" (p = {summary['p']:.3g})"
        return (f"not distinguishable from 0{p}: the interval is unbounded because a gain is not clearly positive, "
                f"so no effect size can be ruled out; more evaluation examples of that task are needed")
    if summary["p"] is None:
        return "no interval: a per-run interval is open (e.g. a gain not clearly positive); more data is needed"
    if summary["mde"] is None and summary["value"] == 0:
        return ("identical on every evaluation example: no difference at this study size, and no variation to size a "
                "minimum detectable effect by (more or harder evaluation data would tell)")
    mde = "not estimable (no variation)" if summary["mde"] is None else f"{summary['mde']:.3g}{unit}"
    if summary["p"] < 1.0 - effects.CONFIDENCE:
        return f"{more if summary['value'] > 0 else less} (p = {summary['p']:.3g}); minimum detectable effect {mde}"
    return (f"not distinguishable from 0 (p = {summary['p']:.3g}); effects smaller than {mde} in size would "
            f"usually be missed at this study size")


def check_metric(metric: str):
    """The MetricSpec of a metric that order asymmetry can use: registered, per task, unit-free."""
    return _metric_spec(metric)


def _metric_spec(metric: str):
    known = registries("metrics").names()
    if metric not in known:
        raise unknown_name("metric", metric, known, "registered metrics")
    spec = registries("metrics").get(metric)
    if spec.scope != "task" or spec.higher_is_better is None:
        raise ConfigError(f"metric {metric!r} is not a per-task score (scope {spec.scope!r}); order asymmetry needs "
                          f"one, e.g. {DEFAULT_METRIC}")
    if spec.unit == TASK_UNIT:
        raise ConfigError(f"metric {metric!r} is in each task's own unit; order asymmetry compares two tasks, so it "
                          f"needs a unit-free metric such as {DEFAULT_METRIC}")
    return spec


def order_asymmetry(cells: dict, metric: str = DEFAULT_METRIC) -> dict:
    """Question (1): for each setting with both orders of a safety/capability pair, the difference of ``metric``
    between the first task of the safety-first chain and that of the capability-first chain."""
    spec = _metric_spec(metric)
    bounds = (spec.low, spec.high)
    answers = []
    by_setting: dict[str, dict[str, dict]] = {}
    for (setting, chain), per_seed in cells.items():
        by_setting.setdefault(setting, {})[chain] = per_seed
    for setting, chains in by_setting.items():
        for chain, per_seed in chains.items():
            view = next(iter(per_seed.values()))
            first = _first(view)
            if first is None or _kind(view, first) != "safety":
                continue
            for other, seeds_other in chains.items():
                view_o = next(iter(seeds_other.values()))
                cap = _first(view_o)
                if cap is None or _kind(view_o, cap) != "capability" or set(other.split(",")) != set(chain.split(",")):
                    continue
                answers.append(_asymmetry_answer(setting, (chain, first, per_seed), (other, cap, seeds_other),
                                                 metric, spec, bounds))
    unit = "" if spec.unit in ("", None) else spec.unit
    return {"metric": metric, "unit": unit, "higher_is_better": spec.higher_is_better, "answers": answers,
            "note": None if answers else "needs both orders of a safety/capability pair (chains S,C and C,S) in "
                                         "one setting"}


def _asymmetry_answer(setting, safety_first, capability_first, metric, spec, bounds) -> dict:
    sides = {}
    for name, (chain, task, per_seed) in (("safety_first", safety_first), ("capability_first", capability_first)):
        results = [v.result for _, v in sorted(per_seed.items(), key=lambda p: str(p[0]))]
        est = estimates.stored_cell(results, metric, task, bounds, spec.unit or None)  # as the leaderboard shows it
        side = {"chain": chain, "task": task, "seeds": len(results),
                "seeds_defined": sum(isinstance(r.get("metrics", {}).get(metric, {}).get(task, {}).get("value"),
                                                (int, float)) for r in results)}
        side.update(est.summary())
        sides[name] = side
    answer = {"setting": _name(setting), "safety_task": sides["safety_first"]["task"],
              "capability_task": sides["capability_first"]["task"], **sides, "difference": None}
    if sides["safety_first"]["value"] is None or sides["capability_first"]["value"] is None:
        answer["reading"] = f"{metric} is missing for one order (see 'missing'); no comparison"
        return answer
    (_, s_task, s_runs), (_, c_task, c_runs) = safety_first, capability_first
    if metric == "relative_forgetting":  # a ratio: Fieller per order, MOVER for the difference, from the records
        diff = estimates.order_asymmetry(s_runs, s_task, c_runs, c_task)
    else:
        diff = estimates.stored_difference([v.result for v in s_runs.values()], s_task,
                                           [v.result for v in c_runs.values()], c_task, metric)
    answer["difference"] = diff.summary()
    forgot_more = spec.higher_is_better is False
    more = "safety is forgotten more when it comes first" if forgot_more else \
        "safety keeps more when it comes first"
    less = "capability is forgotten more when it comes first" if forgot_more else \
        "capability keeps more when it comes first"
    answer["reading"] = _verdict(answer["difference"], more, less, "")
    return answer


def group_dependence(cells: dict, n_boot: int, seed: int, min_group_size: int) -> dict:
    """Question (2): per setting, chain and safety task with forgetting, the spread (one seed: the stored metric, as
    the leaderboard shows it; several: recomputed over seeds, as compare does) and per-group simultaneous intervals."""
    answers = []
    for (setting, chain), per_seed in cells.items():
        view = next(iter(per_seed.values()))
        for task in view.result["eval_tasks"]:
            if _kind(view, task) != "safety":
                continue
            if not estimates.forgetting_vectors(per_seed, task):
                continue
            answers.append(_group_answer(setting, chain, task, per_seed, n_boot, seed, min_group_size))
    return {"answers": answers, "min_group_size": min_group_size,
            "note": None if answers else "needs a safety task trained before the last stage"}


def _group_answer(setting, chain, task, per_seed, n_boot, seed, min_group_size) -> dict:
    answer = {"setting": _name(setting), "chain": chain, "task": task, "seeds": len(per_seed)}
    unit = next(iter(per_seed.values())).inputs.unit(task)
    floor = min_group_size
    if len(per_seed) == 1:
        view = next(iter(per_seed.values()))
        entry = view.entry("biased_forgetting", task)
        if entry.get("value") is None:
            return {**answer, "spread": None, "reading": entry.get("missing", "no biased_forgetting entry")}
        floor = min(min_group_size, int(entry.get("min_group_size", min_group_size)))
        spread = {k: entry.get(k) for k in ("value", "ci_low", "ci_high", "p")}
        groups = []
        for g in list(entry.get("groups") or []):
            e = view.entry("group_forgetting", f"{task}/{g}")
            groups.append({"group": g, "value": e.get("value"), "ci_low": e.get("ci_low"),
                           "ci_high": e.get("ci_high"), "n": e.get("n"), "ci": e.get("ci"),
                           **{k: e[k] for k in ("missing", "ci_missing") if e.get(k)}})
        critical = next((e.get("critical_value") for e in (view.result["metrics"].get("group_forgetting") or {})
                         .values() if isinstance(e, dict) and e.get("critical_value")), None)
        source = "stored biased_forgetting and group_forgetting (as in the leaderboard)"
    else:
        full, cl = estimates.spread_over_seeds(per_seed, task, min_group_size, n_boot, seed)
        if full is None:
            return {**answer, "spread": None, "reading": "fewer than 2 groups with enough eval examples"}
        spread = {k: full[k] for k in ("value", "ci_low", "ci_high", "p")}
        res = estimates.group_intervals_over_seeds(per_seed, cl, task, n_boot, seed)
        critical = res.critical if np.isfinite(res.critical) else None
        counts = estimates.group_sizes(per_seed, task)
        groups = [{"group": g, "value": float(v), "ci_low": None if why else float(lo),
                   "ci_high": None if why else float(hi), "n": counts[g], "ci": "simultaneous",
                   **({"ci_missing": why} if why else {})}
                  for g, v, lo, hi, why in zip(res.names, res.means, res.low, res.high, res.reasons)]
        source = "recomputed over seeds from the records (as in compare)"
    spread["mde"] = estimates.spread_mde(per_seed, task, [g["group"] for g in groups], floor)
    answer.update({"unit": unit, "spread": spread, "groups": groups, "critical_value": critical, "source": source})
    reading = _verdict({"value": spread["value"], "p": spread["p"], "mde": spread["mde"] or float("nan")},
                       "forgetting depends on the group", "forgetting depends on the group", f" {unit}")
    worst = [g for g in groups if g["ci_low"] is not None and all(
        o["ci_high"] is not None and g["ci_low"] > o["ci_high"] for o in groups if o is not g)]
    if worst:
        reading += f"; {worst[0]['group']} forgot more than every other group (simultaneous intervals)"
    answer["reading"] = reading
    return answer


def mitigation(cells: dict, baseline: str, n_boot: int, seed: int) -> dict:
    """Question (3): each setting minus the baseline strategy on the same chain (paired by seed and example) on
    safety forgetting and on final capability, and the Pareto set per chain."""
    answers, fronts = [], []
    chains = list(dict.fromkeys(chain for _, chain in cells))
    contexts = list(dict.fromkeys(setting[1] for setting, _ in cells))
    for chain, context in ((c, x) for c in chains for x in contexts):
        here = {setting: per_seed for (setting, c), per_seed in cells.items() if c == chain and setting[1] == context}
        base_key = next((s for s in here if s[0] == baseline), None)
        if base_key is None:
            continue
        base = here[base_key]
        view = next(iter(base.values()))
        measures = [("safety forgetting", "forgetting", t) for t in view.result["eval_tasks"]
                    if _kind(view, t) == "safety" and view.per_example("forgetting", t)]
        measures += [("final capability", "final", t) for t in view.result["eval_tasks"]
                     if _kind(view, t) == "capability"]
        for setting, per_seed in here.items():
            if setting == base_key:
                continue
            for label, metric, task in measures:
                diff = estimates.paired_difference(per_seed, base, metric, task, view.inputs.unit(task))
                if diff.value is None:
                    continue
                summary = diff.summary()
                unit = view.inputs.unit(task)
                more, less = ((f"forgets more than {baseline}", f"forgets less than {baseline}")
                              if metric == "forgetting" else
                              (f"ends with a higher score than {baseline}",
                               f"ends with a lower score than {baseline} (a capability cost)"))
                answers.append({"setting": _name(setting), "chain": chain, "measure": label, "task": task,
                                "unit": unit, "baseline": _name(base_key), "pairs": diff.seeds, "difference": summary,
                                "reading": _verdict(summary, more, less, f" {unit}")})
        fronts += _pareto(here, measures, chain)
    return {"baseline": baseline, "answers": answers, "pareto": fronts,
            "note": None if answers else f"needs runs of {baseline!r} and another strategy on the same chain"}


def _pareto(here: dict, measures: list, chain: str) -> list[dict]:
    """Per (safety, capability) task pair: each setting's mean (forgetting, final) and the settings no other beats
    on both (less forgetting and more capability)."""
    out = []
    safety = [t for label, _, t in measures if label == "safety forgetting"]
    capability = [t for label, _, t in measures if label == "final capability"]
    for s_task in safety:
        for c_task in capability:
            points, names = [], []
            for setting, per_seed in here.items():  # the cells the leaderboard shows: means over seeds
                results = [v.result for v in per_seed.values()]
                forgot = estimates.stored_cell(results, "forgetting", s_task).value
                final = estimates.final_cell(results, c_task).value
                if forgot is not None and final is not None and all(
                        estimates.final_score(r, c_task) is not None for r in results):
                    names.append(_name(setting))
                    points.append((final, -forgot))
            if len(points) >= 2:
                front = pareto_front(points)
                out.append({"chain": chain, "safety_task": s_task, "capability_task": c_task,
                            "points": [{"setting": n, "final": x, "forgetting": -y} for n, (x, y) in
                                       zip(names, points)], "front": [names[i] for i in front]})
    return out


def findings(runs: Sequence[Any], *, metric: str = DEFAULT_METRIC, baseline: str = "naive",
             n_boot: int = DEFAULTS["n_boot"], seed: int = DEFAULTS["seed"],
             min_group_size: int = DEFAULTS["min_group_size"]) -> dict:
    """The three answers as one JSON-able dict (schema :data:`SCHEMA`)."""
    _metric_spec(metric)
    if not runs:
        raise ConfigError("findings needs at least one complete run")
    cells = _cells(runs)
    return {"schema": SCHEMA_ID, "runs": sum(len(c) for c in cells.values()),
            "confidence": effects.CONFIDENCE, "power": effects.POWER,
            "order_asymmetry": order_asymmetry(cells, metric),
            "group_dependence": group_dependence(cells, n_boot, seed, min_group_size),
            "mitigation": mitigation(cells, baseline, n_boot, seed)}


_NUM = {"type": ["number", "null"]}
_EFFECT = {"type": "object", "required": ["value", "ci_low", "ci_high", "se", "p", "mde", "seeds"],
           "properties": {k: _NUM for k in ("value", "ci_low", "ci_high", "se", "p", "mde")}}
_TEXT = {"type": "string"}
SCHEMA = {
    "type": "object",
    "required": ["schema", "runs", "confidence", "power", "order_asymmetry", "group_dependence", "mitigation"],
    "properties": {
        "schema": {"const": SCHEMA_ID}, "runs": {"type": "integer"},
        "order_asymmetry": {"type": "object", "required": ["metric", "unit", "higher_is_better", "answers"],
                            "properties": {"answers": {"type": "array", "items": {
                                "type": "object",
                                "required": ["setting", "safety_task", "capability_task", "safety_first",
                                             "capability_first", "difference", "reading"],
                                "properties": {"difference": {"oneOf": [_EFFECT, {"type": "null"}]},
                                               "reading": _TEXT}}}}},
        "group_dependence": {"type": "object", "required": ["answers"], "properties": {"answers": {
            "type": "array", "items": {"type": "object", "required": ["setting", "chain", "task", "seeds", "spread",
                                                                      "reading"],
                                       "properties": {"spread": {"oneOf": [{"type": "null"}, {
                                           "type": "object", "required": ["value", "ci_low", "ci_high", "p", "mde"],
                                           "properties": {k: _NUM for k in ("value", "ci_low", "ci_high", "p",
                                                                            "mde")}}]},
                                                      "groups": {"type": "array", "items": {
                                                          "type": "object",
                                                          "required": ["group", "value", "ci_low", "ci_high"]}}}}}}},
        "mitigation": {"type": "object", "required": ["baseline", "answers", "pareto"], "properties": {
            "answers": {"type": "array", "items": {"type": "object", "required": [
                "setting", "chain", "measure", "task", "unit", "pairs", "difference", "reading"],
                "properties": {"difference": _EFFECT}}},
            "pareto": {"type": "array", "items": {"type": "object", "required": [
                "chain", "safety_task", "capability_task", "points", "front"]}}}},
    },
}
