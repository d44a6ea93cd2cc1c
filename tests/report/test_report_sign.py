"""One source of metric truth: a lower-is-better task's forgetting has the same sign in the
metrics room, in compare and in the plots (stored entry or score-matrix fallback)."""

import copy

import pytest
from metrics_fixtures import constant_task, info

from chainforget.metrics.compute import compute_all
from chainforget.report import plots
from chainforget.report.compare import compare_runs


def _run(strategy, harm_final):
    # a harmful-answer rate (lower is better): 0.5 base, 0.1 after training on it, then harm_final -> got worse
    records = (constant_task("harm", [0.5, 0.1, harm_final], n=24, group="g")
               + constant_task("cap", [0.2, 0.2, 0.4], n=24, group="g"))
    task_info = info({"harm": 1, "cap": 2}, higher_is_better={"harm": False})
    task_info["cap"]["kind"] = "capability"
    out = compute_all(records, task_info, ["base", "harm", "cap"], min_group_size=1, n_boot=50)
    result = {"run_id": strategy, "spec": {"strategy": strategy, "chain": ["harm", "cap"], "seed": 0},
              "tasks": ["harm", "cap"], "stages": ["base", "harm", "cap"], "eval_tasks": ["harm", "cap"],
              "task_info": task_info, **out}
    return {"result": result, "records": records, "run_dir": strategy}


def test_lower_is_better_forgetting_has_one_sign_everywhere():
    run = _run("naive", 0.4)
    stored = run["result"]["metrics"]["forgetting"]["harm"]["value"]
    assert stored == pytest.approx(0.3)  # metrics: 0.1 -> 0.4 harm is +0.3 forgetting
    headers, rows = compare_runs({"naive": [run], "other": [_run("other", 0.2)]}, "naive",
                                 metrics=("forgetting",), n_boot=50)
    (row,) = [dict(zip(headers, r)) for r in rows if r[3] == "naive"]
    assert row["value [95% CI]"].value == pytest.approx(stored)
    assert plots.forgetting_of(run["result"], "harm")[0] == pytest.approx(stored)
    bare = copy.deepcopy(run["result"])
    bare["metrics"] = {}  # no stored entry: the plots fall back to the score matrices, same sign
    assert plots.forgetting_of(bare, "harm")[0] == pytest.approx(stored)
    assert plots.group_forgetting(bare, "harm")["g"][0] == pytest.approx(stored)
    assert plots.gain_lost(bare, "harm")[1] == pytest.approx(0.4)  # harm fell 0.5 -> 0.1: a gain of 0.4
