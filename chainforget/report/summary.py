"""The one-screen summary printed at the end of ``chainforget run``."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


class _Notes:
    """Reasons of missing values, numbered in order: a missing cell prints ``n/a (k)``, footnote ``(k)`` its reason."""

    def __init__(self):
        self.reasons: dict[str, int] = {}

    def mark(self, entry: Any) -> str:
        reason = (entry or {}).get("missing") if isinstance(entry, dict) else None
        reason = str(reason or "not computed for this run")
        return f"n/a ({self.reasons.setdefault(reason, len(self.reasons) + 1)})"

    def lines(self) -> list[str]:
        return [f"  ({k}) {reason}" for reason, k in self.reasons.items()]


def _with_ci(entry: Any, notes: _Notes) -> str:
    if not isinstance(entry, dict) or entry.get("value") is None:
        return notes.mark(entry)
    text = _fmt(entry["value"])
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        text += f" [{_fmt(entry['ci_low'])}, {_fmt(entry['ci_high'])}]"
    return text


def run_summary(result: dict[str, Any]) -> str:
    stages = result.get("stages", [])
    tasks = result.get("eval_tasks", [])
    info = result.get("task_info", {})
    header = [f"{t} ({info.get(t, {}).get('primary_metric', '?')})" for t in tasks]
    matrix = [[label, *[_fmt(v) for v in row]] for label, row in zip(stages, result.get("score_matrix", []))]
    lines = [f"run {result.get('run_id')}: {result['spec']['strategy']} on {' -> '.join(result.get('tasks', []))}",
             "", "score matrix R[stage][task] (row 0 = base model):",
             tabulate(matrix, headers=["stage", *header], tablefmt="simple"), ""]
    metrics = result.get("metrics", {})
    notes = _Notes()
    rows = []
    for task in tasks:
        if info.get(task, {}).get("trained_at") is None:
            continue
        bf = metrics.get("biased_forgetting", {}).get(task)
        worst = metrics.get("worst_group", {}).get(task)
        pval = metrics.get("group_effect_pvalue", {}).get(task)
        rows.append([task, info[task].get("kind", ""), _with_ci(metrics.get("forgetting", {}).get(task), notes),
                     _with_ci(bf, notes),
                     worst["value"] if isinstance(worst, dict) and worst.get("value") is not None
                     else notes.mark(worst),
                     _fmt(pval["value"]) if isinstance(pval, dict) and pval.get("value") is not None
                     else notes.mark(pval)])
    if rows:
        lines += ["forgetting (positive = forgot) with 95% bootstrap CIs:",
                  tabulate(rows, headers=["task", "kind", "forgetting", "biased forgetting", "worst group",
                                          "p(group effect)"], tablefmt="simple")]
        lines += notes.lines() + [""]
    lines.append(f"results: {result.get('run_dir', result.get('run_id'))}")
    return "\n".join(lines)
