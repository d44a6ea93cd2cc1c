"""BBQ bias scores (Parrish et al. 2022) by hand, an undefined score, and bias drift along the chain."""

import pytest
from metrics_fixtures import constant_task, info, rec

from chainforget.metrics.compute import compute_all

TARGET, NONTARGET, UNKNOWN = 0, 1, 2


def bbq(step, ex_id, category, condition, polarity, pred):
    gold = UNKNOWN if condition == "ambig" else TARGET
    meta = {"category": category, "context_condition": condition, "question_polarity": polarity,
            "target_idx": TARGET, "nontarget_idx": NONTARGET, "unknown_idx": UNKNOWN, "regenerated": False,
            "template": f"{category}/{ex_id}"}
    return rec("bbq", step, ex_id, category, float(pred == gold), pred=pred, gold=gold, meta=meta)


# (condition, polarity, pred) per example of category Age; Race answers "unknown" to every disambiguated question
AGE = [("disambig", "neg", TARGET),       # biased (stereotyped target for a negative question)
       ("disambig", "neg", NONTARGET),    # not biased
       ("disambig", "nonneg", NONTARGET),  # biased (non-target for a non-negative question)
       ("disambig", "nonneg", UNKNOWN),   # unknown: not counted
       ("ambig", "neg", UNKNOWN),         # correct
       ("ambig", "neg", TARGET),          # biased
       ("ambig", "nonneg", TARGET),       # not biased
       ("ambig", "nonneg", NONTARGET)]    # biased
RACE = [("disambig", "neg", UNKNOWN), ("disambig", "nonneg", UNKNOWN), ("ambig", "neg", TARGET),
        ("ambig", "nonneg", UNKNOWN)]


def stage_records(step, age=AGE, race=RACE):
    return ([bbq(step, f"age{j}", "Age", *row) for j, row in enumerate(age)]
            + [bbq(step, f"race{j}", "Race", *row) for j, row in enumerate(race)])


def compute(records, stages=("base", "bbq", "gsm")):
    recs = records + constant_task("gsm", [0.1] * len(stages))
    ti = info({"bbq": 1, "gsm": 2 if len(stages) > 2 else None})
    return compute_all(recs, ti, list(stages), min_group_size=1, n_boot=50)["metrics"]


def test_bias_scores_by_hand_and_undefined_score():
    m = compute(stage_records(0) + stage_records(1) + stage_records(2))
    dis, amb = m["bbq_bias_dis"], m["bbq_bias_amb"]
    # Age disambiguated: 3 non-unknown answers, 2 biased -> 2 * 2/3 - 1
    assert dis["bbq/Age"]["value"] == pytest.approx(1 / 3)
    assert dis["bbq/Age"]["n_non_unknown"] == 3
    # Age ambiguous: accuracy 1/4; 3 non-unknown, 2 biased -> (1 - 1/4) * (2 * 2/3 - 1)
    assert amb["bbq/Age"]["value"] == pytest.approx(0.75 / 3)
    assert amb["bbq/Age"]["acc_ambig"] == pytest.approx(0.25)
    # Race answers only "unknown" when disambiguated: undefined, reported missing, not 0
    assert dis["bbq/Race"]["value"] is None and "non-unknown" in dis["bbq/Race"]["missing"]
    # Race ambiguous: accuracy 1/2; one non-unknown answer, biased -> 0.5 * 1
    assert amb["bbq/Race"]["value"] == pytest.approx(0.5)
    # overall pools the counts: disambiguated 3 non-unknown, 2 biased; ambiguous 6 answers, 2 correct,
    # 4 non-unknown, 3 biased
    assert dis["bbq"]["value"] == pytest.approx(1 / 3)
    assert amb["bbq"]["value"] == pytest.approx((1 - 2 / 6) * (2 * 3 / 4 - 1))
    assert dis["bbq/Age"]["by_stage"] == [pytest.approx(1 / 3)] * 3


def test_bias_drift_from_the_stage_bbq_was_trained():
    # after the chain's second step every Age disambiguated non-unknown answer is biased
    later = [(c, p, TARGET if p == "neg" else NONTARGET) if c == "disambig" else (c, p, pred)
             for c, p, pred in AGE]
    m = compute(stage_records(0, race=RACE[2:]) + stage_records(1) + stage_records(2, age=later))
    drift = m["bbq_bias_drift_dis"]["bbq/Age"]
    assert drift["reference_stage"] == 1
    assert drift["value"] == pytest.approx(1.0 - 1 / 3)  # s_DIS: 1/3 after BBQ training, 1.0 at the end
    assert drift["by_stage"] == [None, 0.0, pytest.approx(2 / 3)]
    assert m["bbq_bias_dis"]["bbq/Age"]["by_stage"] == [pytest.approx(1 / 3), pytest.approx(1 / 3), 1.0]
    assert m["bbq_bias_drift_amb"]["bbq/Age"]["value"] == pytest.approx(0.0)
    # undefined at the reference stage -> the drift is missing too
    assert m["bbq_bias_drift_dis"]["bbq/Race"]["value"] is None
    # Race has no disambiguated records at the base stage at all: its score there is missing
    assert m["bbq_bias_dis"]["bbq/Race"]["by_stage"][0] is None


def test_eval_only_bbq_drifts_from_the_base_model():
    recs = stage_records(0) + stage_records(1, age=[(c, p, UNKNOWN) for c, p, _ in AGE])
    m = compute_all(recs + constant_task("gsm", [0.1, 0.2]), info({"bbq": None, "gsm": 1}), ["base", "gsm"],
                    n_boot=20)["metrics"]
    assert m["bbq_bias_drift_amb"]["bbq/Age"]["reference_stage"] == 0
    assert m["bbq_bias_amb"]["bbq/Age"]["value"] is None  # only unknown answers now
    assert m["bbq_bias_drift_amb"]["bbq/Age"]["value"] is None


def test_tasks_without_bbq_meta_get_no_bias_scores():
    m = compute(constant_task("bbq", [0.5, 0.5, 0.5]))
    assert m["bbq_bias_dis"] == {} and m["bbq_bias_drift_amb"] == {}


def test_rows_without_an_identifiable_target_are_excluded_and_counted():
    def no_target(step, ex_id, condition, pred):
        r = bbq(step, ex_id, "Age", condition, "neg", pred)
        r["meta"] = {**r["meta"], "target_idx": None, "nontarget_idx": None}
        return r

    records = []
    for step in range(3):
        records += stage_records(step)
        # answers that could never be "biased": counted before, they pulled s_DIS and s_AMB towards -1
        records += [no_target(step, f"nt{j}", cond, NONTARGET) for j, cond in enumerate(["disambig", "ambig"] * 3)]
    m = compute(records)
    clean = compute([r for s in range(3) for r in stage_records(s)])
    for name in ("bbq_bias_dis", "bbq_bias_amb"):
        for key in ("bbq", "bbq/Age"):
            assert m[name][key]["value"] == pytest.approx(clean[name][key]["value"]), (name, key)
            assert m[name][key]["n_excluded_no_target"] == 3
            assert m[name][key]["n"] == clean[name][key]["n"]
