"""compare: paired bootstrap over seeds and examples marks planted differences and leaves null ones unmarked."""

from __future__ import annotations

import numpy as np
import pytest
from test_report_factory import make_run

from chainforget.errors import ConfigError, DataError
from chainforget.report.compare import compare_runs, load_groups
from chainforget.report.tables import render_table
from chainforget.store.results import write_records, write_result

SF = ("bbq", "gsm8k")


def _acc(forget_final: float, cap_final: float = 0.3, group_forget=None):
    """bbq: 0.5 base, 0.85 after training on it, then 0.85 - forgetting; gsm8k: 0.1 until the end."""
    group_forget = group_forget or {}

    def acc(task, step, group):
        if task == "bbq":
            if step == 0:
                return 0.5
            if step == 1:
                return 0.85
            return 0.85 - group_forget.get(group, forget_final)
        return cap_final if step == 2 else 0.1

    return acc


def _row(headers, rows, metric, task, method):
    (row,) = [r for r in rows if r[0] == metric and r[1] == task and r[3] == method]
    return dict(zip(headers, row))


def test_planted_difference_is_significant_and_value_matches_records():
    groups = {
        "naive": [make_run("naive", SF, s, _acc(0.35)) for s in range(2)],
        "replay": [make_run("replay", SF, s, _acc(0.05)) for s in range(2)],
    }
    headers, rows = compare_runs(groups, "naive", n_boot=400)
    assert headers[-2:] == ["diff vs naive [95% CI]", "sig"]
    f = _row(headers, rows, "forgetting", "bbq", "replay")
    assert f["sig"] == "*" and f["pairs"] == "2"
    diff = f["diff vs naive [95% CI]"]
    assert diff.high < 0 and -0.45 < diff.value < -0.15  # planted -0.30
    # the method's value is the mean over seeds of R[1] - R[2] on its records
    expected = np.mean([r["result"]["metrics"]["forgetting"]["bbq"]["value"] for r in groups["replay"]])
    assert f["value [95% CI]"].value == pytest.approx(expected)
    assert f["value [95% CI]"].low <= expected <= f["value [95% CI]"].high
    base = _row(headers, rows, "forgetting", "bbq", "naive")
    assert base["sig"] == "" and base["diff vs naive [95% CI]"] == ""
    # final scores are computed for every task, capability included
    final = _row(headers, rows, "final", "gsm8k", "replay")
    assert final["sig"] == ""  # same capability rate in both
    assert {r[1] for r in rows if r[0] == "forgetting"} == {"bbq"}  # forgetting only for safety tasks
    text = render_table(headers, rows, "github")
    assert "forgetting" in text and "*" in text


def test_null_difference_is_rarely_significant():
    """Ten null comparisons (same accuracies, independent draws): the 95% CI must cover 0 in nearly all of them."""
    naive = [make_run("naive", SF, 0, _acc(0.2), draw_seed=100)]
    groups = {"naive": naive}
    for k in range(10):
        groups[f"null{k}"] = [make_run(f"null{k}", SF, 0, _acc(0.2), draw_seed=200 + k)]
    headers, rows = compare_runs(groups, "naive", metrics=("forgetting",), n_boot=400)
    marks = [_row(headers, rows, "forgetting", "bbq", f"null{k}")["sig"] for k in range(10)]
    assert marks.count("*") <= 2
    # and the same data with a planted 0.3 difference is always marked
    planted = {"naive": naive, **{f"p{k}": [make_run("p", SF, 0, _acc(0.5), draw_seed=300 + k)] for k in range(5)}}
    headers, rows = compare_runs(planted, "naive", metrics=("forgetting",), n_boot=400)
    assert all(_row(headers, rows, "forgetting", "bbq", f"p{k}")["sig"] == "*" for k in range(5))


def test_biased_forgetting_difference():
    uneven = {"Age": 0.45, "Gender": 0.0, "Race": 0.0}
    groups = {
        "naive": [make_run("naive", SF, 0, _acc(0.15), n_per_group=80)],
        "uneven": [make_run("uneven", SF, 0, _acc(0.15, group_forget=uneven), n_per_group=80)],
    }
    headers, rows = compare_runs(groups, "naive", metrics=("biased_forgetting",), n_boot=400)
    row = _row(headers, rows, "biased_forgetting", "bbq", "uneven")
    # the calibrated spread: its interval excludes 0 exactly when the group test rejects (p shown in "sig")
    assert row["sig"].endswith("*") and row["value [95% CI]"].low > 0 and row["value [95% CI]"].value > 0.15
    base = _row(headers, rows, "biased_forgetting", "bbq", "naive")
    p_base = float(base["sig"].split("=")[1].split()[0])
    assert (base["value [95% CI]"].low > 0) == (p_base < 0.05)
    # groups smaller than min_group_size do not count: with none left the metric is blank
    headers, rows = compare_runs(groups, "naive", metrics=("biased_forgetting",), n_boot=50, min_group_size=100)
    assert _row(headers, rows, "biased_forgetting", "bbq", "uneven")["value [95% CI]"] == ""


def test_deterministic_given_seed_and_pairs_by_chain():
    groups = {
        "naive": [make_run("naive", SF, 0, _acc(0.3)), make_run("naive", ("gsm8k", "bbq"), 0, _acc(0.3))],
        "replay": [make_run("replay", SF, 0, _acc(0.1))],
    }
    a = compare_runs(groups, "naive", n_boot=200, seed=3)
    b = compare_runs(groups, "naive", n_boot=200, seed=3)
    assert a == b
    chains = {(r[2], r[3]) for r in a[1] if r[0] == "final"}
    assert chains == {("bbq,gsm8k", "naive"), ("gsm8k,bbq", "naive"), ("bbq,gsm8k", "replay")}


def test_bad_input_is_one_line_error():
    groups = {"naive": [make_run("naive", SF, 0)], "replay": [make_run("replay", SF, 0)]}
    with pytest.raises(ConfigError, match="unknown baseline 'naiv'; did you mean 'naive'"):
        compare_runs(groups, "naiv")
    with pytest.raises(ConfigError, match="did you mean 'forgetting'"):
        compare_runs(groups, "naive", metrics=("forgeting",))
    with pytest.raises(ConfigError, match="two runs for chain bbq,gsm8k and seed 0"):
        compare_runs({"naive": groups["naive"] * 2}, "naive")
    no_records = {**groups["replay"][0], "records": []}
    with pytest.raises(DataError, match="has no evaluation records"):
        compare_runs({"naive": groups["naive"], "x": [no_records]}, "naive")


def test_load_groups_from_directories(tmp_path):
    for label, forget in (("naive", 0.35), ("replay", 0.0)):
        run = make_run(label, SF, 0, _acc(forget), n_per_group=30)
        run_dir = tmp_path / label / run["result"]["run_id"]  # a run folder is named after its run
        for step in range(3):
            write_records(run_dir, step, [r for r in run["records"] if r["step"] == step])
        write_result(run_dir, run["result"])
    groups, warnings = load_groups([f"base={tmp_path / 'naive'}", str(tmp_path / "replay")])
    assert list(groups) == ["base", str(tmp_path / "replay")] and warnings == []
    headers, rows = compare_runs(groups, "base", metrics=("forgetting",), n_boot=300)
    assert _row(headers, rows, "forgetting", "bbq", str(tmp_path / "replay"))["sig"] == "*"


def test_no_forgetting_row_for_the_last_task_and_drift_for_eval_only_tasks():
    def drifting(amount):
        return lambda task, step, group: (0.7 - amount * step) if task == "bbq" else 0.2

    groups = {
        "naive": [make_run("naive", ("gsm8k",), 0, drifting(0.0)), make_run("naive", ("gsm8k", "bbq"), 0)],
        "m": [make_run("m", ("gsm8k",), 0, drifting(0.4)), make_run("m", ("gsm8k", "bbq"), 0)],
    }
    headers, rows = compare_runs(groups, "naive", n_boot=300)
    assert not [r for r in rows if r[0] in ("forgetting", "biased_forgetting")]  # bbq is never followed by a stage
    (drift,) = [dict(zip(headers, r)) for r in rows if r[0] == "drift" and r[3] == "m"]
    assert drift["chain"] == "gsm8k" and drift["sig"] == "*" and drift["diff vs naive [95% CI]"].value > 0.25


def test_compare_point_values_equal_the_stored_metrics_of_chainforget_metrics(tmp_path):
    """compare recomputes from records with the definitions of chainforget.metrics: the numbers must agree."""
    from chainforget.metrics.compute import compute_all

    groups = {}
    for label, forget, uneven in (("naive", 0.3, {"Age": 0.5}), ("replay", 0.1, {})):
        run = make_run(label, SF, 0, _acc(forget, group_forget=uneven), n_per_group=30)
        result = run["result"]
        computed = compute_all(run["records"], result["task_info"], result["stages"],
                               eval_tasks=result["eval_tasks"], n_boot=50, metrics=["forgetting", "biased_forgetting"])
        result.update(computed)
        write_result(tmp_path / result["run_id"], result)  # real metric output passes the schema
        groups[label] = [{**run, "result": result}]
    headers, rows = compare_runs(groups, "naive", metrics=("forgetting", "biased_forgetting", "final"), n_boot=50)
    for label in groups:
        stored = groups[label][0]["result"]
        for metric in ("forgetting", "biased_forgetting"):
            value = _row(headers, rows, metric, "bbq", label)["value [95% CI]"].value
            assert value == pytest.approx(stored["metrics"][metric]["bbq"]["value"])
        final = _row(headers, rows, "final", "gsm8k", label)["value [95% CI]"].value
        assert final == pytest.approx(stored["score_matrix"][-1][1])
