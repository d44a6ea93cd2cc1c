"""Score matrices and forgetting/transfer metrics against hand-computed matrices (signs included)."""

import pytest
from metrics_fixtures import constant_task, info, rec, task_records

from chainforget.errors import DataError
from chainforget.metrics.compute import compute_all
from chainforget.metrics.matrices import group_score_matrix, group_sizes, score_matrix

# Two-step chain A -> B, eval-only probe P. Task A: groups g1 = examples 0,1 and g2 = examples 2,3.
A_COLUMNS = [[0, 0, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]  # R[.][A] = 0.25, 1.0, 0.25
A_GROUPS = ["g1", "g1", "g2", "g2"]  # R_g1 = 0, 1, 0.5 ; R_g2 = 0.5, 1, 0


def two_step_records():
    return (task_records("A", A_COLUMNS, A_GROUPS)
            + constant_task("B", [0.5, 0.75, 1.0])
            + task_records("P", [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 0, 1, 0, 0]], ["p"] * 5))


TWO_STEP_INFO = info({"A": 1, "B": 2, "P": None})
STAGES = ["base", "A", "B"]


def run(records, task_info, stages, **kw):
    kw.setdefault("min_group_size", 2)
    kw.setdefault("n_boot", 200)
    return compute_all(records, task_info, stages, **kw)


def test_score_matrices_by_hand():
    recs = two_step_records()
    assert score_matrix(recs, ["A", "B", "P"]) == [[0.25, 0.5, 0.8], [1.0, 0.75, 0.6], [0.25, 1.0, 0.4]]
    assert group_score_matrix(recs, ["A"]) == {"A": {"g1": [0.0, 1.0, 0.5], "g2": [0.5, 1.0, 0.0]}}
    assert group_sizes(recs, ["A", "P"]) == {"A": {"g1": 2, "g2": 2}, "P": {"p": 5}}


def test_missing_stage_or_task_is_none_not_zero():
    recs = constant_task("A", [0.5, 1.0]) + constant_task("B", [0.25])  # B never evaluated after the base model
    assert score_matrix(recs, ["A", "B", "C"], n_stages=3) == [[0.5, 0.25, None], [1.0, None, None],
                                                             [None, None, None]]


def test_two_step_chain_forgetting_family():
    out = run(two_step_records(), TWO_STEP_INFO, STAGES)
    m = out["metrics"]
    assert m["forgetting"]["A"]["value"] == pytest.approx(0.75)  # R[1][A] - R[2][A] = 1 - 0.25: forgot
    assert m["forgetting"]["A"]["by_stage"] == [None, 0.0, pytest.approx(0.75)]
    assert "B" not in m["forgetting"]  # trained at the last stage: nothing after it
    assert m["max_forgetting"]["A"] == {"value": pytest.approx(0.75), "best_stage": 1}
    assert m["drift"]["P"]["value"] == pytest.approx(0.8 - 0.4)
    assert set(m["drift"]) == {"P"}
    assert m["average_score"]["overall"]["value"] == pytest.approx((0.25 + 1.0 + 0.4) / 3)
    assert m["average_score"]["overall"]["by_stage"][0] == pytest.approx((0.25 + 0.5 + 0.8) / 3)
    assert m["bwt"]["overall"]["value"] == pytest.approx(-0.75)
    assert m["fwt"]["B"]["value"] == pytest.approx(0.25)  # R[1][B] - R[0][B]
    assert m["fwt"]["overall"]["value"] == pytest.approx(0.25)


def test_improvement_gives_negative_forgetting():
    recs = constant_task("A", [0.2, 0.5, 0.75]) + constant_task("B", [0.5, 0.5, 0.5])
    m = run(recs, info({"A": 1, "B": 2}), STAGES)["metrics"]
    assert m["forgetting"]["A"]["value"] == pytest.approx(-0.25)
    assert m["max_forgetting"]["A"]["value"] == pytest.approx(-0.25)
    assert m["bwt"]["overall"]["value"] == pytest.approx(0.25)


def test_lower_is_better_score_keeps_positive_meaning_worse():
    # a harmfulness rate: 0.1 after training it, 0.4 at the end -> it got worse -> forgetting +0.3
    recs = (constant_task("H", [0.5, 0.1, 0.4]) + constant_task("B", [0.5, 0.5, 0.5])
            + constant_task("Q", [0.2, 0.3, 0.6]))
    ti = info({"H": 1, "B": 2, "Q": None}, higher_is_better={"H": False, "Q": False})
    m = run(recs, ti, STAGES)["metrics"]
    assert m["forgetting"]["H"]["value"] == pytest.approx(0.3)
    assert m["max_forgetting"]["H"]["value"] == pytest.approx(0.3)  # best (lowest) is 0.1 at stage 1
    assert m["drift"]["Q"]["value"] == pytest.approx(0.4)
    assert m["bwt"]["overall"]["value"] == pytest.approx(-0.3)
    # lower-is-better tasks are not averaged with accuracies
    assert m["average_score"]["overall"]["tasks"] == ["B"]
    assert m["average_score"]["overall"]["excluded"] == ["H", "Q"]


def test_three_step_chain():
    # columns A, B, C trained at 1, 2, 3
    rows = {"A": [0.1, 0.6, 0.8, 0.5], "B": [0.2, 0.3, 0.9, 0.4], "C": [0.4, 0.45, 0.5, 1.0]}
    recs = [r for t, means in rows.items() for r in constant_task(t, means)]
    out = run(recs, info({"A": 1, "B": 2, "C": 3}), ["base", "A", "B", "C"])
    m = out["metrics"]
    assert out["score_matrix"][2] == [pytest.approx(0.8), pytest.approx(0.9), pytest.approx(0.5)]
    assert m["forgetting"]["A"]["value"] == pytest.approx(0.6 - 0.5)
    assert m["forgetting"]["A"]["by_stage"] == [None, 0.0, pytest.approx(-0.2), pytest.approx(0.1)]
    assert m["forgetting"]["B"]["value"] == pytest.approx(0.9 - 0.4)
    assert m["max_forgetting"]["A"] == {"value": pytest.approx(0.8 - 0.5), "best_stage": 2}
    assert m["bwt"]["overall"]["value"] == pytest.approx(-((0.1 + 0.5) / 2))
    assert m["fwt"]["B"]["value"] == pytest.approx(0.1)
    assert m["fwt"]["C"]["value"] == pytest.approx(0.1)
    assert "A" not in m["fwt"]
    assert m["fwt"]["overall"]["value"] == pytest.approx(0.1)


def test_extra_retune_stage_is_the_last_row():
    rows = {"A": [0.5, 1.0, 0.25, 0.75], "B": [0.2, 0.3, 0.9, 0.6]}
    recs = [r for t, means in rows.items() for r in constant_task(t, means)]
    m = run(recs, info({"A": 1, "B": 2}), ["base", "A", "B", "retune"])["metrics"]
    assert m["forgetting"]["A"]["value"] == pytest.approx(0.25)  # after re-tuning, not after B
    assert m["forgetting"]["A"]["by_stage"][2] == pytest.approx(0.75)  # forgetting right after B
    assert m["forgetting"]["B"]["value"] == pytest.approx(0.3)  # B now has a later stage
    assert m["bwt"]["overall"]["value"] == pytest.approx(-(0.25 + 0.3) / 2)


def test_single_task_chain():
    recs = constant_task("A", [0.3, 0.9]) + constant_task("P", [0.5, 0.25])
    m = run(recs, info({"A": 1, "P": None}), ["base", "A"])["metrics"]
    assert m["forgetting"] == {} and m["max_forgetting"] == {} and m["fwt"] == {}
    assert m["biased_forgetting"] == {} and m["group_effect_pvalue"] == {}
    assert m["bwt"]["overall"]["value"] is None and m["bwt"]["overall"]["missing"]
    assert m["drift"]["P"]["value"] == pytest.approx(0.25)
    assert m["average_score"]["overall"]["value"] == pytest.approx((0.9 + 0.25) / 2)


def test_missing_final_score_is_reported_missing():
    recs = constant_task("A", [0.3, 0.9]) + constant_task("B", [0.5, 0.5, 0.5]) + constant_task("P", [0.5])
    m = run(recs, info({"A": 1, "B": 2, "P": None}), STAGES)["metrics"]
    assert m["forgetting"]["A"]["value"] is None and "stage" in m["forgetting"]["A"]["missing"]
    assert m["drift"]["P"]["value"] is None
    assert m["average_score"]["overall"]["value"] is None


def test_bad_records_raise_one_line_data_errors():
    with pytest.raises(DataError, match="task_info does not describe"):
        compute_all(constant_task("X", [0.5]), info({"A": 1}), ["base", "A"])
    with pytest.raises(DataError, match="outside the 2 stages"):
        compute_all(constant_task("A", [0.5, 0.5, 0.5]), info({"A": 1}), ["base", "A"])
    with pytest.raises(DataError, match="two records"):
        compute_all([rec("A", 0, 1, "g", 1.0), rec("A", 0, 1, "g", 0.0)], info({"A": 1}), ["base", "A"])
    with pytest.raises(DataError, match="no score 'acc'"):
        compute_all([{**rec("A", 0, 1, "g", 1.0), "scores": {"f1": 1.0}}], info({"A": 1}), ["base", "A"])
