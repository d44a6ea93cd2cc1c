"""``chainforget power``: how many evaluation examples and seeds a study needs to see a stated effect, and its cost.

It reads pilot runs (several seeds scoring the same examples), takes for each of the paper's three questions the
per-example quantity its statistic averages, estimates that quantity's variance components
(``metrics.power.estimate``) on the noisiest comparison of the question, and sizes the design with the power of the
product's own statistic (``metrics.power``). The cost of the planned study comes from the dry-run estimator
(``benchmark.dryrun``: the real batch plan and a throughput probe of this machine); a GPU's cost is a stated
assumption until someone measures one. ``--write-suite`` writes the planned study as a suite file.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from chainforget.config.ranges import check_number
from chainforget.config.suite import expand_suite, resolve_suite
from chainforget.errors import ConfigError, DataError
from chainforget.metrics import inference
from chainforget.metrics import power as pw
from chainforget.metrics.compute import build_inputs
from chainforget.metrics.uncertainty import paired_differences
from chainforget.report.tables import chain_label, strategy_labels
from chainforget.store.results import find_runs, load_run

SCHEMA_ID = "chainforget.power/1"
QUESTIONS = ("asymmetry", "spread", "mitigation")
DEFAULT_EFFECTS = {"asymmetry": 0.5, "spread": 0.05, "mitigation": 0.03}
# A GPU's throughput for SmolLM2-135M-sized runs: an ASSUMPTION (no GPU was measured), the figures docs/results.md
# used for the paper preset's guess (about 5,000 training tokens/s and 50 scored examples/s).
GPU_TRAIN_TPS = 5_000.0
GPU_SCORE_TPS = 12_500.0
GPU_RUN_OVERHEAD_S = 10.0
MAX_EXAMPLES = 100_000  # per group, when the eval split's size is unknown


# -- the pilot ---------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    strategy: str
    chain: tuple[str, ...]
    seed: Any
    inputs: Any
    kinds: dict[str, str]

    def vector(self, task: str, before: int, after: int):
        """(ids, values, groups, clusters) of ``sign * (x[before] - x[after])`` on the examples scored at both."""
        view = self.inputs.views[task]
        values, keep = paired_differences(view.values, before, after, self.inputs.sign(task))
        ids = [i for i, k in zip(view.ids, keep) if k]
        groups = [g for g, k in zip(view.groups, keep) if k]
        clusters = None if view.clusters is None else [c for c, k in zip(view.clusters, keep) if k]
        return ids, values, groups, clusters

    def forgetting(self, task: str):
        a = self.inputs.trained_at(task)
        if a is None or a >= self.inputs.last or task not in self.inputs.views:
            return None
        return self.vector(task, a, self.inputs.last)

    def gain(self, task: str):
        a = self.inputs.trained_at(task)
        return None if a is None or task not in self.inputs.views else self.vector(task, a, a - 1)


def pilot_cells(runs: Sequence[dict]) -> dict[tuple[str, tuple[str, ...]], dict[Any, _Run]]:
    """Loaded runs (``store.results.load_run``) by (strategy with its parameters, chain) and seed."""
    cells: dict[tuple[str, tuple[str, ...]], dict[Any, _Run]] = {}
    labels = strategy_labels([run["result"] for run in runs])
    for run, label in zip(runs, labels):
        result = run["result"]
        where = run.get("run_dir") or result.get("run_id", "?")
        if not run.get("records"):
            raise DataError(f"{where} has no evaluation records; the planner needs them: rerun that run")
        spec = result.get("spec", {})
        chain = tuple(spec.get("chain") or result.get("tasks") or ())
        seed = spec.get("seed")
        inputs = build_inputs(run["records"], result["task_info"], result["stages"], result.get("eval_tasks"))
        kinds = {t: info.get("kind") for t, info in result["task_info"].items()}
        per_seed = cells.setdefault((label, chain), {})
        if seed in per_seed:
            raise ConfigError(f"two pilot runs of {label} on {chain_label(result)} with seed {seed} (they differ in "
                              f"another setting); give the runs of one design, e.g. one preset's --out folder")
        per_seed[seed] = _Run(label, chain, seed, inputs, kinds)
    return cells


def _aligned(vectors: list) -> tuple[np.ndarray, list[str], list[str] | None] | None:
    return inference.align(vectors) if vectors else None


def _units(runs: Sequence[_Run], vectors: list, task: str, ctx: Context) -> list[str] | None:
    """The sampling unit (``split.eval_sample_unit``, e.g. BBQ's context) of each aligned example, from the
    records; None when the task draws examples one by one or a unit is not recorded."""
    field = ctx.unit_fields.get(task)
    if not field or not vectors:
        return None
    key = field[5:] if field.startswith("meta.") else field
    where: dict[str, str] = {}
    for run in runs:
        for rec in run.inputs.records:
            if rec.get("task") == task and rec.get("id") not in where:
                value = (rec.get("meta") or {}).get(key, rec.get(key))
                if value is not None:
                    where[rec["id"]] = str(value)
    common = set.intersection(*(set(v[0]) for v in vectors))
    ids = [i for i in vectors[0][0] if i in common]
    if not all(i in where for i in ids):
        return None
    return [where[i] for i in ids]


@dataclass
class Comparison:
    """One comparison of a question in the pilot, reduced to its per-example quantity's components."""

    label: str
    task: str
    components: pw.Components
    second_task: str | None = None
    second: pw.Components | None = None
    value: float | None = None
    ratios: tuple[pw.RatioSide, pw.RatioSide] | None = None


@dataclass
class Context:
    max_examples: dict[str, int] = field(default_factory=dict)
    max_templates: dict[str, float] = field(default_factory=dict)
    unit_fields: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    split: Callable[[str], tuple[int, float, str | None]] | None = None  # task -> (examples, templates, unit)


def split_limits(task: str, ctx: Context) -> None:
    """The eval split's smallest group (the most examples per group a stratified sample can give) and its templates
    per group, read from the task's data; unknown (with a note) when the task cannot be loaded here."""
    if task in ctx.max_examples:
        return
    if ctx.split is not None:
        ctx.max_examples[task], ctx.max_templates[task], ctx.unit_fields[task] = ctx.split(task)
        return
    try:
        from chainforget.tasks import resolve_task
        from chainforget.tasks.splits import unit_of

        resolved = resolve_task(task)
        examples = resolved.eval_examples()
        unit = resolved.spec.split.unit
        per_group: dict[str, set] = {}
        counts: dict[str, int] = {}
        for ex in examples:
            counts[ex.group] = counts.get(ex.group, 0) + 1
            per_group.setdefault(ex.group, set()).add(unit_of(ex, unit))
        ctx.max_examples[task] = min(counts.values())
        ctx.max_templates[task] = float(np.mean([len(v) for v in per_group.values()]))
        ctx.unit_fields[task] = resolved.spec.split.eval_sample_unit
    except Exception as exc:  # noqa: BLE001 - a task that cannot be loaded here only loses its caps
        ctx.max_examples[task] = MAX_EXAMPLES
        ctx.max_templates[task] = math.inf
        ctx.unit_fields[task] = None
        ctx.notes.append(f"task {task!r} could not be loaded ({type(exc).__name__}); its eval split's size and "
                         f"templates are not known, so examples per group are capped at {MAX_EXAMPLES:,} only")


def _components(vectors: list, task: str, ctx: Context, runs: Sequence[_Run], min_group_size: int = 1,
                transform: Callable[[np.ndarray], np.ndarray] | None = None, pairs: int = 1) -> pw.Components | None:
    aligned = _aligned(vectors)
    if aligned is None:
        return None
    values, groups, clusters = aligned
    split_limits(task, ctx)
    units = _units(runs, vectors, task, ctx)
    if pairs > 1:  # vectors come as consecutive tuples (e.g. strategy, baseline) per seed
        values = values.reshape(-1, pairs, values.shape[1])
        values = transform(values) if transform else values[:, 0] - values[:, 1]
    names, counts = np.unique(np.array(groups, dtype=object), return_counts=True)
    keep_groups = set(names[counts >= min_group_size].tolist())
    if len(keep_groups) < (2 if min_group_size > 1 else 1):
        return None
    mask = np.array([g in keep_groups for g in groups])

    def kept(labels):
        return None if labels is None else [x for x, m in zip(labels, mask) if m]

    return pw.estimate(values[:, mask], kept(groups), kept(clusters), ctx.max_templates.get(task, math.inf),
                       units=kept(units))


def mitigation_comparisons(cells, baseline: str, ctx: Context) -> list[Comparison]:
    out = []
    for (label, chain), per_seed in cells.items():
        base = cells.get((baseline, chain))
        if label == baseline or base is None:
            continue
        run = next(iter(per_seed.values()))
        for task in (t for t in run.inputs.eval_tasks if run.kinds.get(t) == "safety"):
            vectors = []
            for seed in sorted(set(per_seed) & set(base), key=str):
                mine, theirs = per_seed[seed].forgetting(task), base[seed].forgetting(task)
                if mine and theirs:
                    vectors += [mine, theirs]
            comp = _components(vectors, task, ctx, list(per_seed.values()), pairs=2) if vectors else None
            if comp is not None:
                out.append(Comparison(f"{label} - {baseline} on {','.join(chain)}", task, comp))
    return out


def spread_comparisons(cells, min_group_size: int, ctx: Context) -> list[Comparison]:
    out = []
    for (label, chain), per_seed in cells.items():
        run = next(iter(per_seed.values()))
        for task in (t for t in run.inputs.eval_tasks if run.kinds.get(t) == "safety"):
            vectors = [v for _, r in sorted(per_seed.items(), key=lambda p: str(p[0])) if (v := r.forgetting(task))]
            comp = _components(vectors, task, ctx, list(per_seed.values()), min_group_size) if vectors else None
            if comp is not None:
                out.append(Comparison(f"{label} on {','.join(chain)}", task, comp))
    return out


def _ratio_side(per_seed: dict, task: str, ctx: Context) -> pw.RatioSide | None:
    """One order's first task: its per-example forgetting and gain over the seeds, as a planner's ratio."""
    vectors = []
    for _, r in sorted(per_seed.items(), key=lambda p: str(p[0])):
        f, g = r.forgetting(task), r.gain(task)
        if f and g:
            vectors += [f, g]
    aligned = _aligned(vectors)
    if aligned is None:
        return None
    values, groups, clusters = aligned
    values = values.reshape(-1, 2, values.shape[1])
    if values[:, 1].mean() <= 0:
        return None
    split_limits(task, ctx)
    return pw.ratio_side(values[:, 0], values[:, 1], groups, clusters, ctx.max_templates.get(task, math.inf),
                         _units(list(per_seed.values()), vectors, task, ctx))


def asymmetry_comparisons(cells, ctx: Context) -> list[Comparison]:
    out = []
    for (label, chain), per_seed in cells.items():
        run = next(iter(per_seed.values()))
        if not chain or run.kinds.get(chain[0]) != "safety":
            continue
        for (other_label, other), seeds_other in cells.items():
            other_run = next(iter(seeds_other.values()))
            if other_label != label or not other or set(other) != set(chain) or \
                    other_run.kinds.get(other[0]) != "capability":
                continue
            first = _ratio_side(per_seed, chain[0], ctx)
            second = _ratio_side(seeds_other, other[0], ctx)
            if first and second:
                out.append(Comparison(f"{label}: {chain[0]} first vs {other[0]} first", chain[0], first.design,
                                      other[0], second.design, first.ratio - second.ratio, (first, second)))
            else:
                ctx.notes.append(f"order asymmetry of {label}: a task's gain is not positive in the pilot, so its "
                                 f"relative forgetting cannot be planned")
    return out


# -- planning ----------------------------------------------------------------------------------------------------
def split_effect_words(paths: Sequence[str], effects: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--effect spread=0.05 mitigation=0.03``: the words after the first pair land among the paths; a word
    ``QUESTION=SIZE`` that names no existing file is an effect."""
    keep, more = [], list(effects)
    for p in paths:
        name = str(p).partition("=")[0]
        (more if name in DEFAULT_EFFECTS and "=" in str(p) and not Path(p).exists() else keep).append(p)
    if not keep:
        raise ConfigError("no pilot runs given; pass the folder of a finished leaderboard, e.g. "
                          "`chainforget power runs-quick-seeds`")
    return keep, more


def parse_effects(items: Sequence[str]) -> dict[str, float]:
    """``--effect spread=0.05 mitigation=0.03 asymmetry=0.5`` (each question at most once; defaults for the rest)."""
    effects = dict(DEFAULT_EFFECTS)
    for item in items:
        for part in str(item).replace(",", " ").split():
            name, sep, text = part.partition("=")
            if not sep or name not in DEFAULT_EFFECTS:
                raise ConfigError(f"--effect {part!r}: give QUESTION=SIZE with QUESTION one of "
                                  f"{', '.join(QUESTIONS)}, e.g. --effect spread=0.05")
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"--effect {part!r}: {text!r} is not a number; e.g. --effect {name}="
                                  f"{DEFAULT_EFFECTS[name]}") from None
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"--effect {part!r}: the effect must be a positive number (a size, not a sign)")
            effects[name] = value
    return effects


def _plan_question(name: str, comps: list[Comparison], effect: float, seeds: Sequence[int], ctx: Context,
                   power: float, alpha: float, n_safety: dict[int, int] | None = None) -> dict:
    if not comps:
        return None, {"question": name, "effect": effect, "comparison": None, "needed": [],
                "note": {"mitigation": "needs the baseline and another strategy on the same chain",
                         "spread": "needs a safety task trained before the last stage with 2+ groups",
                         "asymmetry": "needs both orders of a safety/capability pair"}[name]}
    if name == "mitigation":
        pick = pw.noisiest([c.components for c in comps], lambda c: pw.mean_design(c, c.pilot_examples, 2)[0])
    elif name == "spread":
        pick = pw.noisiest([c.components for c in comps], lambda c: pw.spread_design(c, c.pilot_examples, 2)[0])
    else:
        pick = max(range(len(comps)), key=lambda i: pw.mean_design(comps[i].components, comps[i].components
                                                                   .pilot_examples, 2)[0]
                   + pw.mean_design(comps[i].second, comps[i].second.pilot_examples, 2)[0])
    comp = comps[pick]
    c = comp.components
    hi = ctx.max_examples.get(comp.task, MAX_EXAMPLES)
    out = {"question": name, "effect": effect, "comparison": comp.label, "comparisons": len(comps),
           "task": comp.task, "components": c.as_dict(), "needed": []}
    pilot_s = max(c.pilot_seeds, 1)
    if name == "mitigation":
        out["pilot_power"] = pw.mean_power(c, effect, c.pilot_examples, pilot_s, alpha) if pilot_s >= 2 else None
        for s in seeds:
            n = pw.smallest(lambda k, s=s: pw.mean_power(c, effect, k, s, alpha), power, 2, hi)
            out["needed"].append({"seeds": s, "examples_per_group": {comp.task: n}})
    elif name == "spread":
        out["pilot_power"] = pw.spread_power(c, effect, c.pilot_examples, pilot_s, alpha) if pilot_s >= 2 else None
        for s in seeds:
            n = pw.smallest(lambda k, s=s: pw.spread_power(c, effect, k, s, alpha), power, 2, hi)
            out["needed"].append({"seeds": s, "examples_per_group": {comp.task: n}})
    else:
        c2 = comp.second
        out.update({"second_task": comp.second_task, "second_components": c2.as_dict(),
                    "pilot_difference": comp.value})
        hi2 = ctx.max_examples.get(comp.second_task, MAX_EXAMPLES)
        r1, r2 = comp.ratios
        out["pilot_ratios"] = [r1.ratio, r2.ratio]
        out["pilot_power"] = pw.asymmetry_power(r1, r2, effect, c.pilot_examples, c2.pilot_examples, pilot_s,
                                                alpha) if pilot_s >= 2 else None
        for s in seeds:
            n1 = max(int(c.pilot_examples), (n_safety or {}).get(s) or 0)
            n1 = min(n1, hi)
            n2 = pw.smallest(lambda k, s=s, n1=n1: pw.asymmetry_power(r1, r2, effect, n1, k, s, alpha), power,
                             2, hi2)
            out["needed"].append({"seeds": s, "examples_per_group": {comp.task: n1, comp.second_task: n2}})
    return comp, out


def power_at(name: str, comp: Comparison, effect: float, per_task: dict[str, int], seeds: int,
             alpha: float) -> float:
    """The power of question ``name`` at a design (examples per group per task, seeds)."""
    n = per_task.get(comp.task, int(comp.components.pilot_examples))
    if name == "mitigation":
        return pw.mean_power(comp.components, effect, n, seeds, alpha)
    if name == "spread":
        return pw.spread_power(comp.components, effect, n, seeds, alpha)
    n2 = per_task.get(comp.second_task, int(comp.second.pilot_examples))
    return pw.asymmetry_power(*comp.ratios, effect, n, n2, seeds, alpha)


def _need(answer: dict, seeds: int) -> dict | None:
    return next((row["examples_per_group"] for row in answer["needed"] if row["seeds"] == seeds), None)


def plan_study(cells, *, effects: dict[str, float], power: float = pw.POWER, alpha: float = pw.ALPHA,
               baseline: str = "naive", seeds: Sequence[int] = range(2, 11), min_group_size: int = 20,
               seed_sd: float | None = None, seed_group_sd: float | None = None,
               split: Callable[[str], tuple[int, float, str | None]] | None = None) -> dict:
    """Every question's requirement per number of seeds, and the recommended study (the fewest seeds at which every
    question that can be answered is, with the examples the most demanding question needs). ``split`` gives a
    task's eval split size and templates per group and its eval sampling unit (default: read from the task's
    data)."""
    ctx = Context(split=split)
    pilot_seeds = max(len(v) for v in cells.values())
    prior = (lambda c: pw.with_seed_prior(c, seed_sd, seed_group_sd))

    def adjust(items: list[Comparison]) -> list[Comparison]:
        for item in items:
            item.components = prior(item.components)
            if item.second is not None:
                item.second = prior(item.second)
        return items

    mit = adjust(mitigation_comparisons(cells, baseline, ctx))
    spr = adjust(spread_comparisons(cells, min_group_size, ctx))
    asy = adjust(asymmetry_comparisons(cells, ctx))
    chosen, answers = {}, {}
    for name, comps in (("mitigation", mit), ("spread", spr)):
        chosen[name], answers[name] = _plan_question(name, comps, effects[name], seeds, ctx, power, alpha)
    safety_need: dict[int, int] = {}
    for s in seeds:
        needs = [(_need(a, s) or {}).get(a.get("task")) for a in answers.values() if a.get("comparison")]
        if any(n is not None for n in needs):  # the safety task's examples the other questions need here
            safety_need[s] = max(n for n in needs if n is not None)
    chosen["asymmetry"], answers["asymmetry"] = _plan_question("asymmetry", asy, effects["asymmetry"], seeds, ctx,
                                                               power, alpha, safety_need)
    if pilot_seeds < 2 and seed_sd is None:
        ctx.notes.append("the pilot has one seed: training randomness is unknown and planned as 0 (optimistic); "
                         "give --seed-sd and --seed-group-sd, or pilot with 2+ seeds")
    recommendation = _recommend(answers, seeds)
    if recommendation is not None:
        recommendation["power"] = {name: power_at(name, comp, effects[name], recommendation["examples_per_group"],
                                                  recommendation["seeds"], alpha)
                                   for name, comp in chosen.items() if comp is not None}
    return {"schema": SCHEMA_ID, "pilot": {"runs": sum(len(v) for v in cells.values()), "seeds": pilot_seeds,
                                           "settings": len(cells)},
            "target": {"power": power, "alpha": alpha, "effects": effects, "baseline": baseline,
                       "min_group_size": min_group_size},
            "questions": answers, "recommendation": recommendation, "notes": ctx.notes}


def _reachable(answer: dict, seeds: int) -> bool:
    need = _need(answer, seeds)
    return need is not None and all(v is not None for v in need.values())


def _recommend(answers: dict, seeds: Sequence[int]) -> dict | None:
    """The fewest seeds at which every question that any candidate design can answer is answered; the questions
    no candidate reaches are named (more seeds or examples than allowed, or a template floor)."""
    live = [a for a in answers.values() if a.get("comparison")]
    if not live:
        return None
    most = max(seeds)
    unreachable = [a["question"] for a in live if not _reachable(a, most)]
    wanted = [a for a in live if a["question"] not in unreachable]
    best = next((s for s in sorted(seeds) if all(_reachable(a, s) for a in wanted)), most)
    per_task: dict[str, int] = {}
    for a in live:
        for task, n in (_need(a, best) or {}).items():
            if n is not None and (a in wanted or task not in per_task):
                per_task[task] = max(per_task.get(task, 0), n)
    return {"seeds": best, "examples_per_group": per_task, "unreachable": unreachable, "max_seeds": most}


def _plain(obj: Any) -> Any:
    """Plain dicts and lists (a preset holds read-only mappings), so that the suite can be written as YAML."""
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def planned_suite(base: dict, recommendation: dict, groups: dict[str, int]) -> dict:
    """The base suite with the recommended seeds and evaluation examples (``limit_eval`` per task = examples per
    group x groups; a stratified sample spreads it evenly over the groups)."""
    suite = _plain(base)
    suite["seeds"] = list(range(recommendation["seeds"]))
    old = suite.get("limit_eval")
    limits = dict(old) if isinstance(old, dict) else ({} if old is None else {"default": old})
    for task, n in recommendation["examples_per_group"].items():
        limits[task] = int(n) * int(groups.get(task, 1))
    suite["limit_eval"] = limits
    suite["description"] = (f"planned by `chainforget power`: {recommendation['seeds']} seeds, "
                            + ", ".join(f"{t} {n} per group" for t, n in recommendation["examples_per_group"].items()))
    return suite


def study_cost(suite: dict, gpu_train_tps: float, gpu_score_tps: float) -> dict:
    """The dry-run estimate of the planned study on this machine (the real batch plan and a throughput probe), and
    a GPU's time at the ASSUMED throughput."""
    from chainforget.benchmark.dryrun import dry_run
    from chainforget.store.provenance import cpu_model

    specs = expand_suite(suite)
    with tempfile.TemporaryDirectory(prefix="chainforget-power-") as out:
        dry = dry_run(specs, out)
    todo = [p for p in dry.runs if not p.complete]
    positions = dry.positions  # the padded positions the estimate prices, per kind and task
    train_tokens = float(sum(positions.get("train", {}).values()))
    score_tokens = float(sum(positions.get("score", {}).values()))
    gpu_s = train_tokens / gpu_train_tps + score_tokens / gpu_score_tps + len(todo) * GPU_RUN_OVERHEAD_S
    return {"runs": len(specs), "cpu_seconds": dry.estimate_s, "cpu_parts": dry.parts, "cpu_model": cpu_model(),
            "train_tokens": int(train_tokens), "score_tokens": int(score_tokens),
            "gpu": {"assumed": True, "seconds": gpu_s, "train_tokens_per_s": gpu_train_tps,
                    "score_tokens_per_s": gpu_score_tps, "overhead_per_run_s": GPU_RUN_OVERHEAD_S}}


def _groups_per_task(answers: dict) -> dict[str, int]:
    out = {}
    for a in answers.values():
        if a.get("comparison"):
            out[a["task"]] = a["components"]["groups"]
            if a.get("second_task"):
                out[a["second_task"]] = a["second_components"]["groups"]
    return out


def power_command(paths: Sequence[str], *, effects: Sequence[str] = (), power: float = pw.POWER,
                  alpha: float = pw.ALPHA, baseline: str = "naive", max_seeds: int = 10, seeds: int | None = None,
                  min_group_size: int = 20, seed_sd: float | None = None, seed_group_sd: float | None = None,
                  base: str = "quick", write_suite: str | None = None, cost: bool = True,
                  gpu_train_tps: float = GPU_TRAIN_TPS, gpu_score_tps: float = GPU_SCORE_TPS, fmt: str = "text"
                  ) -> tuple[str, list[str]]:
    """Plan from the pilot runs under ``paths``; returns (text or JSON, warnings)."""
    for name, value, low, high in (("power", power, 0.5, 0.999), ("alpha", alpha, 1e-6, 0.5)):
        if not (isinstance(value, (int, float)) and low <= value <= high):
            raise ConfigError(f"--{name} must be between {low} and {high}, got {value!r}")
    if not 2 <= max_seeds <= 100:
        raise ConfigError(f"--max-seeds must be between 2 and 100, got {max_seeds}")
    if seeds is not None and not 2 <= seeds <= 100:
        raise ConfigError(f"--seeds must be between 2 and 100 (the plan includes training randomness, which one seed "
                          f"cannot estimate), got {seeds}")
    for name, value in (("seed-sd", seed_sd), ("seed-group-sd", seed_group_sd), ("gpu-train-tps", gpu_train_tps),
                        ("gpu-score-tps", gpu_score_tps)):
        if value is not None and not (math.isfinite(value) and value >= 0 and (value > 0 or "sd" in name)):
            raise ConfigError(f"--{name} must be a finite number >= 0 (> 0 for a throughput), got {value!r}")
    check_number("min_group_size", min_group_size)
    if write_suite and not Path(write_suite).resolve().parent.is_dir():  # before the planning and the dry run
        raise ConfigError(f"--write-suite {write_suite}: its folder does not exist; create it or pick another path")
    paths, effects = split_effect_words(paths, effects)
    wanted = parse_effects(effects)
    base_suite = resolve_suite(base)  # before reading runs: a typo is reported at once
    found, warnings = find_runs(paths)
    cells = pilot_cells([load_run(p) for p in found])
    seed_range = [seeds] if seeds is not None else list(range(2, max_seeds + 1))
    result = plan_study(cells, effects=wanted, power=power, alpha=alpha, baseline=baseline, seeds=seed_range,
                        min_group_size=min_group_size, seed_sd=seed_sd, seed_group_sd=seed_group_sd)
    rec = result["recommendation"]
    result["base"] = base
    result["suite"] = None
    result["cost"] = None
    if rec is not None:
        suite = planned_suite(base_suite, rec, _groups_per_task(result["questions"]))
        result["suite"] = suite
        if cost:
            result["cost"] = study_cost(suite, gpu_train_tps, gpu_score_tps)
        if write_suite:
            Path(write_suite).write_text(yaml.safe_dump(suite, sort_keys=False))
            result["suite_file"] = str(write_suite)
    if fmt == "json":
        return json.dumps(result, indent=2, default=_json_default) + "\n", warnings
    return render_text(result), warnings


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(type(obj).__name__)


# -- text --------------------------------------------------------------------------------------------------------
TITLES = {"asymmetry": "(1) order asymmetry (difference of relative forgetting, share of the stage's gain)",
          "spread": "(2) group dependence (between-group SD of forgetting, the biased-forgetting spread)",
          "mitigation": "(3) mitigation (forgetting difference vs the baseline)"}


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _components_line(c: dict, question: str) -> str:
    seed_key = "seed_by_group" if question == "spread" else "seed"
    df = c["pilot_seeds"] - 1
    return (f"template {_g(c['template'])}, example {_g(c['example'])}, seed x example {_g(c['residual'])}, "
            f"{seed_key.replace('_', ' ')} {_g(c[seed_key])} (from {c['pilot_seeds']} seed(s): "
            f"{df} df for training randomness)")


def render_text(result: dict) -> str:
    target = result["target"]
    lines = [f"power plan from {result['pilot']['runs']} pilot runs ({result['pilot']['seeds']} seed(s), "
             f"{result['pilot']['settings']} strategy x chain settings); target power {target['power']:.2f} at "
             f"alpha {target['alpha']:g} (two-sided), with training randomness (2+ seeds)", ""]
    for name in QUESTIONS:
        a = result["questions"][name]
        lines.append(f"{TITLES[name]}: effect {a['effect']:g}")
        if not a.get("comparison"):
            lines += [f"  not planned: {a['note']}", ""]
            continue
        lines.append(f"  planned on the noisiest of {a['comparisons']} comparison(s): {a['comparison']}")
        lines.append(f"  {a['task']} components: {_components_line(a['components'], name)}")
        if a.get("second_task"):
            lines.append(f"  {a['second_task']} components: {_components_line(a['second_components'], name)}")
            lines.append(f"  pilot difference: {_g(a.get('pilot_difference'))}")
        if a.get("pilot_power") is not None:
            lines.append(f"  power of the pilot's own design: {a['pilot_power']:.2f}")
        for row in a["needed"]:
            need = ", ".join(f"{t} {'not reachable' if n is None else n}" for t, n in row["examples_per_group"].items())
            lines.append(f"  {row['seeds']:>2} seeds: examples per group {need}")
        lines.append("")
    rec = result["recommendation"]
    if rec is None:
        lines.append("no recommendation: the pilot answers none of the questions")
    else:
        lines.append(f"recommended study: {rec['seeds']} seeds; examples per group: "
                     + ", ".join(f"{t} {n}" for t, n in rec["examples_per_group"].items()))
        lines.append("  power at this design: " + ", ".join(f"{k} {v:.2f}" for k, v in rec["power"].items()))
        if rec["unreachable"]:
            lines.append(f"  not reachable with up to {rec['max_seeds']} seeds and the eval split's examples: "
                         + ", ".join(rec["unreachable"]) + " (the study above answers the others)")
    cost = result.get("cost")
    if cost:
        parts = cost["cpu_parts"]
        lines.append(f"cost on this machine (dry-run estimate, {cost['cpu_model']}): {_fmt_time(cost['cpu_seconds'])}"
                     f" for {cost['runs']} runs (train {_fmt_time(parts.get('train', 0))}, score "
                     f"{_fmt_time(parts.get('score', 0))}, set-up {_fmt_time(parts.get('setup', 0))}); "
                     f"{cost['train_tokens']:,} training and {cost['score_tokens']:,} scoring token positions")
        gpu = cost["gpu"]
        lines.append(f"cost on one GPU: {_fmt_time(gpu['seconds'])}, ASSUMED throughput (not measured): "
                     f"{gpu['train_tokens_per_s']:,.0f} training and {gpu['score_tokens_per_s']:,.0f} scoring "
                     f"tokens/s, {gpu['overhead_per_run_s']:g} s per run")
    if result.get("suite_file"):
        lines.append(f"suite written to {result['suite_file']}: run it with "
                     f"`chainforget leaderboard --suite {result['suite_file']}`")
    for note in result["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"
