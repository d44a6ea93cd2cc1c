"""Synthetic result dicts and runs for the report tests (no model needed); the sanity tests of the factory itself.

``make_result`` fixes every number of a result by hand (for the leaderboard), ``make_run`` draws per-example records
from planted accuracies and derives the score matrices from them (for compare and plots), as a real run would.
"""

from __future__ import annotations

import zlib

import numpy as np

TASK_INFO = {
    "bbq": {"kind": "safety", "primary_metric": "acc", "higher_is_better": True},
    "gsm8k": {"kind": "capability", "primary_metric": "exact_match", "higher_is_better": True},
}
GROUPS = ("Age", "Gender", "Race")


def _ci(value, half=0.02):
    return {"value": value, "ci_low": value - half, "ci_high": value + half}


def make_result(strategy="naive", chain=("bbq", "gsm8k"), seed=0, forgetting=0.1, biased=0.05, cap_final=0.3,
                finetune="full", learning_rate=1e-4, retune=False, metrics=True):
    """A schema-valid result with hand-set forgetting, biased forgetting and final capability score."""
    chain = list(chain)
    stages = ["base", *chain] + (["retune"] if retune else [])
    eval_tasks = ["bbq", "gsm8k"]
    info = {t: {**TASK_INFO[t], "trained_at": chain.index(t) + 1 if t in chain else None} for t in eval_tasks}
    a = info["bbq"]["trained_at"]
    rows = []
    for t in range(len(stages)):
        bbq = 0.5 if t < a else 0.8
        rows.append([bbq, 0.1])
    rows[-1] = [rows[a][0] - forgetting, cap_final]
    result = {
        "schema_version": 1,
        "run_id": f"{strategy}-{'-'.join(chain)}-s{seed}-{finetune}-{learning_rate}",
        "spec": {"model": "tiny", "chain": chain, "strategy": strategy, "finetune": finetune,
                 "learning_rate": learning_rate, "seed": seed},
        "tasks": chain,
        "stages": stages,
        "eval_tasks": eval_tasks,
        "task_info": info,
        "score_matrix": rows,
        "group_score_matrix": {"bbq": {g: [r[0] for r in rows] for g in GROUPS}},
        "group_sizes": {"bbq": {g: 40 for g in GROUPS}},
        "metrics": {},
    }
    if metrics:
        result["metrics"] = {"forgetting": {"bbq": _ci(forgetting)}, "biased_forgetting": {"bbq": _ci(biased)}}
    return result


def make_run(strategy="naive", chain=("bbq", "gsm8k"), seed=0, acc=None, n_per_group=60, draw_seed=None,
             sharpness=None):
    """A run dict {"run_dir", "result", "records"} whose records are Bernoulli draws of ``acc(task, step, group)``.

    The same example ids are used for every run (as in a real benchmark), the score matrices and the forgetting
    metrics are computed from the drawn records.
    """
    acc = acc or (lambda task, step, group: 0.5)
    chain = list(chain)
    stages = ["base", *chain]
    eval_tasks = ["bbq", "gsm8k"]
    info = {t: {**TASK_INFO[t], "trained_at": chain.index(t) + 1 if t in chain else None} for t in eval_tasks}
    key = f"{strategy}|{','.join(chain)}|{seed}|{draw_seed}"
    rng = np.random.default_rng(zlib.crc32(key.encode()) if draw_seed is None else draw_seed)
    records = []
    for step in range(len(stages)):
        for task in eval_tasks:
            primary = info[task]["primary_metric"]
            for group in GROUPS:
                for k in range(n_per_group):
                    correct = float(rng.random() < acc(task, step, group))
                    records.append({"task": task, "step": step, "id": f"{task}/{group}/{k}", "group": group,
                                    "subgroup": "", "gold": 0, "pred": 0 if correct else 1, "correct": correct,
                                    "scores": {primary: correct}, "primary": primary, "meta": {}})
    matrix = [[0.0] * len(eval_tasks) for _ in stages]
    group_matrix = {t: {g: [0.0] * len(stages) for g in GROUPS} for t in eval_tasks}
    for t, task in enumerate(eval_tasks):
        for step in range(len(stages)):
            sel = [r["correct"] for r in records if r["task"] == task and r["step"] == step]
            matrix[step][t] = float(np.mean(sel))
            for g in GROUPS:
                group_matrix[task][g][step] = float(np.mean(
                    [r["correct"] for r in records if r["task"] == task and r["step"] == step and r["group"] == g]))
    forgetting = {}
    for t, task in enumerate(eval_tasks):
        a = info[task]["trained_at"]
        if a is not None:
            forgetting[task] = {"value": matrix[a][t] - matrix[-1][t], "ci_low": None, "ci_high": None}
    result = {
        "schema_version": 1,
        "run_id": f"{strategy}-{'-'.join(chain)}-s{seed}",
        "spec": {"model": "tiny", "chain": chain, "strategy": strategy, "seed": seed},
        "tasks": chain, "stages": stages, "eval_tasks": eval_tasks, "task_info": info,
        "score_matrix": matrix, "group_score_matrix": group_matrix,
        "group_sizes": {t: {g: n_per_group for g in GROUPS} for t in eval_tasks},
        "metrics": {"forgetting": forgetting},
    }
    if sharpness is not None:
        result["sharpness"] = [{"lambda_max": x} for x in sharpness]
    return {"run_dir": None, "result": result, "records": records}


def test_make_run_matrix_matches_records():
    run = make_run(acc=lambda task, step, group: 0.9 if step == 1 else 0.2, draw_seed=1)
    matrix = run["result"]["score_matrix"]
    assert matrix[1][0] > 0.75 and matrix[0][0] < 0.35
    n_bbq_step1 = sum(1 for r in run["records"] if r["task"] == "bbq" and r["step"] == 1)
    assert n_bbq_step1 == 3 * 60


def test_make_result_final_row_sets_forgetting():
    result = make_result(forgetting=0.25, cap_final=0.4)
    a = result["task_info"]["bbq"]["trained_at"]
    assert abs(result["score_matrix"][a][0] - result["score_matrix"][-1][0] - 0.25) < 1e-12
    assert result["score_matrix"][-1][1] == 0.4
