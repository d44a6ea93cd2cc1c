"""Builders of evaluation records for the metrics tests (no tests here): records in the docs/contracts.md format."""

from __future__ import annotations


def rec(task, step, ex_id, group, value, *, primary="acc", pred=None, gold=None, meta=None):
    return {"task": task, "step": step, "id": f"{task}/{ex_id}", "group": group, "subgroup": "",
            "gold": gold, "pred": pred, "correct": value, "scores": {primary: value}, "primary": primary,
            "meta": meta or {}}


def task_records(task, columns, groups, primary="acc"):
    """``columns[t][j]`` = score of example j at stage t (None = not evaluated); ``groups[j]`` = its group."""
    out = []
    for step, column in enumerate(columns):
        for j, value in enumerate(column):
            if value is not None:
                out.append(rec(task, step, j, groups[j], value, primary=primary))
    return out


def info(trained_at, higher_is_better=None, primary="acc"):
    """task_info for ``{task: trained_at}`` (None = eval-only)."""
    higher_is_better = higher_is_better or {}
    return {t: {"kind": "safety", "primary_metric": primary, "higher_is_better": higher_is_better.get(t, True),
                "trained_at": a} for t, a in trained_at.items()}


def constant_task(task, means, n=4, group="g"):
    """Scores whose stage means are ``means`` (each value repeated over n examples)."""
    return task_records(task, [[m] * n for m in means], [group] * n)
