"""The one-screen summary printed at the end of ``chainforget run``."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _with_ci(entry: Any) -> str:
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "-"
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
    rows = []
    for task in tasks:
        if info.get(task, {}).get("trained_at") is None:
            continue
        bf = metrics.get("biased_forgetting", {}).get(task)
        worst = metrics.get("worst_group", {}).get(task)
        pval = metrics.get("group_effect_pvalue", {}).get(task)
        rows.append([task, info[task].get("kind", ""), _with_ci(metrics.get("forgetting", {}).get(task)),
                     _with_ci(bf), (worst or {}).get("value", "-") if isinstance(worst, dict) else "-",
                     _fmt((pval or {}).get("value")) if isinstance(pval, dict) else "-"])
    if rows:
        lines += ["forgetting (positive = forgot) with 95% bootstrap CIs:",
                  tabulate(rows, headers=["task", "kind", "forgetting", "biased forgetting", "worst group",
                                          "p(group effect)"], tablefmt="simple"), ""]
    lines.append(f"results: {result.get('run_dir', result.get('run_id'))}")
    return "\n".join(lines)
