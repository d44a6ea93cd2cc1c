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

Every number comes from the metrics room: stored metric entries (one seed) or the records through
``metrics.spread`` / ``metrics.effects`` (seeds combined: training randomness included). Nothing is computed here
beyond choosing which runs answer which question; ``findings_render`` turns the result into text or HTML.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from chainforget.errors import ConfigError, did_you_mean
from chainforget.metrics import effects
from chainforget.metrics import spread as spread_stats
from chainforget.metrics.base import TASK_UNIT
from chainforget.metrics.compute import read_run
from chainforget.plugins import registries
from chainforget.report.compare import _aligned, _rng, _RunView, seeds_clustered
from chainforget.report.plots import pareto_front
from chainforget.report.tables import _strategy_labels, _varying_fields, grouping_fields, metric_entry, spec_label

SCHEMA_ID = "chainforget.findings/1"
DEFAULT_METRIC = "relative_forgetting"


def _cells(runs: Sequence[Any]) -> dict[tuple[tuple[str, str], str], dict[Any, _RunView]]:
    """Runs by (setting, chain) and seed; a setting is (the strategy with its differing hyper-parameters, the other
    fields that vary across the runs: finetune, learning rate...)."""
    views = [_RunView(read_run(r) if isinstance(r, (str, os.PathLike)) else r) for r in runs]
    results = [v.result for v in views]
    fields = _varying_fields(results)
    cells: dict[tuple[str, str], dict[Any, _RunView]] = {}
    for label, view in zip(_strategy_labels(results), views):
        extra = grouping_fields(view.result)
        setting = (label, " ".join(f"{k}={spec_label(extra.get(k))}" for k in fields))
        per_seed = cells.setdefault((setting, view.chain), {})
        if view.seed in per_seed:
            raise ConfigError(f"two runs of {_name(setting)} on chain {view.chain} with seed {view.seed} "
                              f"({per_seed[view.seed].where}, {view.where}); pass each run once")
        per_seed[view.seed] = view
    return cells


def _name(setting: tuple[str, str]) -> str:
    return " ".join(x for x in setting if x)


def _kind(view: _RunView, task: str) -> str | None:
    return view.kind(task)


def _first(view: _RunView) -> str | None:
    tasks = view.result.get("tasks") or view.result.get("spec", {}).get("chain") or []
    return tasks[0] if tasks else None


def _verdict(summary: dict, more: str, less: str, unit: str) -> str:
    """One sentence reading an effect against 0 and against its minimum detectable effect."""
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
        raise ConfigError(f"unknown metric {metric!r}; {did_you_mean(metric, known)}registered metrics: "
                          f"{', '.join(known)}")
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
    estimates = []
    for name, (chain, task, per_seed) in (("safety_first", safety_first), ("capability_first", capability_first)):
        entries = [metric_entry(v.result, metric, task) for _, v in sorted(per_seed.items(), key=lambda p: str(p[0]))]
        defined = [e for e in entries if isinstance(e[0], (int, float))]
        side = {"chain": chain, "task": task, "seeds": len(entries), "seeds_defined": len(defined)}
        if defined:
            est = effects.from_entries(defined)
            side.update(est.summary(bounds))
            estimates.append(est)
        else:
            side.update({"value": None, "missing": _missing_reason(per_seed, metric, task)})
        sides[name] = side
    answer = {"setting": _name(setting), "safety_task": sides["safety_first"]["task"],
              "capability_task": sides["capability_first"]["task"], **sides, "difference": None}
    if len(estimates) == 2:
        diff = estimates[0].minus(estimates[1]).summary()
        answer["difference"] = diff
        forgot_more = spec.higher_is_better is False
        more = "safety is forgotten more when it comes first" if forgot_more else \
            "safety keeps more when it comes first"
        less = "capability is forgotten more when it comes first" if forgot_more else \
            "capability keeps more when it comes first"
        answer["reading"] = _verdict(diff, more, less, "")
    else:
        answer["reading"] = f"{metric} is missing for one order (see 'missing'); no comparison"
    return answer


def _missing_reason(per_seed: dict, metric: str, task: str) -> str:
    for view in per_seed.values():
        entry = view.result.get("metrics", {}).get(metric, {}).get(task)
        if isinstance(entry, dict) and entry.get("missing"):
            return str(entry["missing"])
    return f"no {metric} entry for {task!r} in these runs"


def _forgetting_vectors(per_seed: dict, task: str, metric: str = "forgetting") -> list:
    return [vec for _, v in sorted(per_seed.items(), key=lambda p: str(p[0])) if (vec := v.per_example(metric, task))]


def group_dependence(cells: dict, n_boot: int, seed: int, min_group_size: int) -> dict:
    """Question (2): per setting, chain and safety task with forgetting, the spread (one seed: the stored metric, as
    the leaderboard shows it; several: recomputed over seeds, as compare does) and per-group simultaneous intervals."""
    answers = []
    for (setting, chain), per_seed in cells.items():
        view = next(iter(per_seed.values()))
        for task in view.result["eval_tasks"]:
            if _kind(view, task) != "safety":
                continue
            vectors = _forgetting_vectors(per_seed, task)
            if not vectors:
                continue
            answers.append(_group_answer(setting, chain, task, per_seed, vectors, n_boot, seed, min_group_size))
    return {"answers": answers, "min_group_size": min_group_size,
            "note": None if answers else "needs a safety task trained before the last stage"}


def _group_answer(setting, chain, task, per_seed, vectors, n_boot, seed, min_group_size) -> dict:
    answer = {"setting": _name(setting), "chain": chain, "task": task, "seeds": len(vectors)}
    unit = next(iter(per_seed.values())).inputs.unit(task)
    if len(vectors) == 1:
        result = next(iter(per_seed.values())).result
        entry = result.get("metrics", {}).get("biased_forgetting", {}).get(task) or {}
        if entry.get("value") is None:
            return {**answer, "spread": None, "reading": entry.get("missing", "no biased_forgetting entry")}
        used = list(entry.get("groups") or [])
        cl = seeds_clustered(vectors, min(min_group_size, int(entry.get("min_group_size", min_group_size))))
        spread = {k: entry.get(k) for k in ("value", "ci_low", "ci_high", "p")}
        groups = []
        for g in used:
            e = result["metrics"].get("group_forgetting", {}).get(f"{task}/{g}") or {}
            groups.append({"group": g, "value": e.get("value"), "ci_low": e.get("ci_low"),
                           "ci_high": e.get("ci_high"), "n": e.get("n"), "ci": e.get("ci")})
        critical = next((e.get("critical_value") for e in (result["metrics"].get("group_forgetting") or {}).values()
                         if isinstance(e, dict) and e.get("critical_value")), None)
        source = "stored biased_forgetting and group_forgetting (as in the leaderboard)"
    else:
        cl = seeds_clustered(vectors, min_group_size)
        if cl is None:
            return {**answer, "spread": None, "reading": "fewer than 2 groups with enough eval examples"}
        full = spread_stats.spread(cl, n_boot, _rng(seed, "biased_forgetting", task, chain, _name(setting)))
        spread = {k: full[k] for k in ("value", "ci_low", "ci_high", "p")}
        m, low, high, critical = spread_stats.simultaneous_intervals(
            cl, n_boot, _rng(seed, "group_forgetting", task, chain, _name(setting)))
        counts = dict(zip(*np.unique(np.array(_aligned(vectors)[1], dtype=object), return_counts=True)))
        groups = [{"group": g, "value": float(v), "ci_low": float(lo), "ci_high": float(hi), "n": int(counts[g]),
                   "ci": "simultaneous"} for g, v, lo, hi in zip(cl.names, m, low, high)]
        source = "recomputed over seeds from the records (as in compare)"
    if cl is not None:
        cl = _restrict(cl, [g["group"] for g in groups])
    spread["mde"] = effects.spread_mde(spread_stats.group_moments(cl)[1]) if cl is not None else None
    answer.update({"unit": unit, "spread": spread, "groups": groups, "critical_value": critical, "source": source})
    reading = _verdict({"value": spread["value"], "p": spread["p"], "mde": spread["mde"] or float("nan")},
                       "forgetting depends on the group", "forgetting depends on the group", f" {unit}")
    worst = [g for g in groups if g["ci_low"] is not None and all(
        g["ci_low"] > o["ci_high"] for o in groups if o is not g and o["ci_high"] is not None)]
    if worst:
        reading += f"; {worst[0]['group']} forgot more than every other group (simultaneous intervals)"
    answer["reading"] = reading
    return answer


def _restrict(cl: spread_stats.Clustered, groups: list[str]) -> spread_stats.Clustered | None:
    """The clusters of the named groups only (the ones the stored spread compared)."""
    keep_codes = [i for i, name in enumerate(cl.names) if name in set(groups)]
    if len(keep_codes) < 2:
        return None
    mask = np.isin(cl.group, keep_codes)
    remap = {old: new for new, old in enumerate(keep_codes)}
    return spread_stats.Clustered(tuple(cl.names[i] for i in keep_codes),
                                  np.array([remap[g] for g in cl.group[mask]], dtype=np.int64), cl.sizes[mask],
                                  cl.totals[:, mask], cl.pooled_var)


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
                pairs = []
                for s, v in sorted(per_seed.items(), key=lambda p: str(p[0])):
                    if s in base and (mine := v.per_example(metric, task)) and (theirs := base[s].per_example(
                            metric, task)) and (aligned := _aligned([mine, theirs])) is not None:
                        pairs.append((aligned[0][0], aligned[0][1], aligned[1], aligned[2]))
                if not pairs:
                    continue
                effect = effects.paired_effect(pairs, n_boot,
                                               _rng(seed, "findings", label, task, chain, _name(setting)))
                summary = effect.summary()
                unit = view.inputs.unit(task)
                more, less = ((f"forgets more than {baseline}", f"forgets less than {baseline}")
                              if metric == "forgetting" else
                              (f"ends with a higher score than {baseline}",
                               f"ends with a lower score than {baseline} (a capability cost)"))
                answers.append({"setting": _name(setting), "chain": chain, "measure": label, "task": task,
                                "unit": unit, "baseline": _name(base_key), "pairs": len(pairs), "difference": summary,
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
            for setting, per_seed in here.items():
                forgot = [metric_entry(v.result, "forgetting", s_task)[0] for v in per_seed.values()]
                final = [v.inputs.score(c_task, v.last) for v in per_seed.values()]
                if all(isinstance(x, (int, float)) for x in forgot + final):
                    names.append(_name(setting))
                    points.append((float(np.mean(final)), -float(np.mean(forgot))))
            if len(points) >= 2:
                front = pareto_front(points)
                out.append({"chain": chain, "safety_task": s_task, "capability_task": c_task,
                            "points": [{"setting": n, "final": x, "forgetting": -y} for n, (x, y) in
                                       zip(names, points)], "front": [names[i] for i in front]})
    return out


def findings(runs: Sequence[Any], *, metric: str = DEFAULT_METRIC, baseline: str = "naive", n_boot: int = 1000,
             seed: int = 0, min_group_size: int = 20) -> dict:
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
