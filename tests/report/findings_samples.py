"""Hand-built findings dicts (the shape ``chainforget.report.findings.findings`` returns) for the page, text and
browser tests: many settings with long names, a planted group effect, a p far below 0.001, intervals that reach
past an accuracy's range, an all-zero study and a study whose order metric is missing for both orders."""

from __future__ import annotations

import functools

GROUPS = ("Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance", "Race_ethnicity",
          "Religion", "SES", "Sexual_orientation")
SETTINGS = ("naive", "replay", "ewc(fisher_samples=8)", "lwf", "safety-retune(retune_fraction=0.25, epochs=2)")


def effect(value, low, high, p, mde, unit="acc", seeds=3):
    return {"value": value, "ci_low": low, "ci_high": high, "p": p, "mde": mde, "se": 0.01, "n": 180,
            "seeds": seeds, "unit": unit, "missing": None, "unbounded": None}


def side(chain, task, value, low, high, missing=None):
    return {"chain": chain, "task": task, "seeds": 3, "seeds_defined": 0 if missing else 3, "value": value,
            "ci_low": low, "ci_high": high, "p": None, "mde": None, "se": None, "n": 180,
            "unit": "share of the stage's gain", "missing": missing, "unbounded": None}


def found(kind: str = "planted") -> dict:
    """``planted``: real effects; ``zero``: every difference exactly 0 on every example; ``missing``: the order
    metric missing for both orders."""
    zero = kind == "zero"
    oa_answers = []
    for i, s in enumerate(SETTINGS):
        if kind == "missing":
            why = "training on 'bbq' did not raise its score (gain 0 <= 0)"
            first = side("bbq,gsm8k", "bbq", None, None, None, why)
            second = side("gsm8k,bbq", "gsm8k", None, None, None, why.replace("bbq", "gsm8k"))
            diff = None
        elif zero:
            first, second = side("bbq,gsm8k", "bbq", 0.0, 0.0, 0.0), side("gsm8k,bbq", "gsm8k", 0.0, 0.0, 0.0)
            diff = effect(0.0, 0.0, 0.0, 1.0, None, None)
        else:
            first = side("bbq,gsm8k", "bbq", 0.8 - 0.1 * i, 0.5 - 0.1 * i, 1.4)
            second = side("gsm8k,bbq", "gsm8k", 0.1, -0.2, 0.4)
            diff = effect(0.7 - 0.1 * i, 0.3 - 0.1 * i, 1.1, 2e-7 if i == 0 else 0.2, 0.35, None)
        oa_answers.append({"setting": s, "safety_task": "bbq", "capability_task": "gsm8k", "safety_first": first,
                           "capability_first": second, "difference": diff, "reading": "as findings.py words it"})
    gd_answers = []
    for i, s in enumerate(SETTINGS):
        groups = []
        for j, g in enumerate(GROUPS):
            v = 0.0 if zero else 0.05 * (j % 4) + (0.5 if g == "Age" else 0.0)
            low, high = (v, v) if zero else (-1.2, 1.3) if (i, g) == (1, "Religion") else (v - 0.1, v + 0.1)
            groups.append({"group": g, "value": v, "ci_low": low, "ci_high": high, "n": 20 + j, "ci": "simultaneous"})
        spread = ({"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p": 1.0, "mde": 7.67e-06} if zero else
                  {"value": 0.12, "ci_low": 0.05, "ci_high": 0.2, "p": 0.0 if i == 0 else 0.3, "mde": 0.08})
        gd_answers.append({"setting": s, "chain": "bbq,gsm8k", "task": "bbq", "seeds": 3, "unit": "acc",
                           "spread": spread, "groups": groups, "critical_value": 2.9, "source": "test",
                           "reading": "as findings.py words it"})
    mi_answers = []
    for i, s in enumerate(SETTINGS[1:]):
        for measure, task, unit in (("safety forgetting", "bbq", "acc"), ("final capability", "gsm8k",
                                                                           "gold_logprob")):
            diff = (effect(0.0, 0.0, 0.0, 1.0, None, unit) if zero else
                    effect(-0.2 + 0.05 * i, -1.4, 0.1 * i - 0.1, 1e-5 if i == 0 else 0.4, 0.1, unit))
            mi_answers.append({"setting": s, "chain": "bbq,gsm8k", "measure": measure, "task": task, "unit": unit,
                               "baseline": "naive", "pairs": 3, "difference": diff,
                               "reading": "as findings.py words it"})
    points = [{"setting": s, "final": 0.3 if i < 2 else 0.3 + 0.01 * i, "forgetting": 0.2} for i, s in
              enumerate(SETTINGS)]
    pareto = [{"chain": "bbq,gsm8k", "safety_task": "bbq", "capability_task": "gsm8k", "points": points,
               "front": [SETTINGS[-1]]}]
    return {"schema": "chainforget.findings/1", "runs": 30, "confidence": 0.95, "power": 0.8,
            "order_asymmetry": {"metric": "relative_forgetting", "unit": "share of the stage's gain",
                                "higher_is_better": False, "answers": oa_answers, "note": None},
            "group_dependence": {"answers": gd_answers, "min_group_size": 20, "note": None},
            "mitigation": {"baseline": "naive", "answers": mi_answers, "pareto": pareto, "note": None}}


@functools.lru_cache(maxsize=None)
def page(kind: str = "planted") -> str:
    """The HTML page of :func:`found` (rendered once per session: figures take seconds)."""
    from chainforget.report.findings_render import render

    return render(found(kind), "html")
