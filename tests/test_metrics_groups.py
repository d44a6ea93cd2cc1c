"""Per-group and biased forgetting by hand; bootstrap CIs; permutation p-values under a null and a planted effect."""

import numpy as np
import pytest
from metrics_fixtures import constant_task, info, task_records
from test_metrics_forgetting import STAGES, TWO_STEP_INFO, run, two_step_records

from chainforget.metrics.uncertainty import permutation_pvalue


def test_two_step_chain_per_group_by_hand():
    m = run(two_step_records(), TWO_STEP_INFO, STAGES)["metrics"]
    g1, g2 = m["group_forgetting"]["A/g1"], m["group_forgetting"]["A/g2"]
    assert g1["value"] == pytest.approx(0.5) and g2["value"] == pytest.approx(1.0)
    assert g1["n"] == 2 and g1["small"] is False
    assert m["biased_forgetting"]["A"]["value"] == pytest.approx(0.5)
    assert m["biased_forgetting_std"]["A"]["value"] == pytest.approx(0.25)  # population std of {0.5, 1.0}
    assert m["worst_group"]["A"]["value"] == "g2" and m["worst_group"]["A"]["forgetting"] == pytest.approx(1.0)
    assert m["worst_group_excess"]["A"]["value"] == pytest.approx(1.0 - 0.75)


def groups_records(sizes, drops, stages=3):
    """Task A with groups of ``sizes``; every example scores 1 until stage 1, then ``1 - drop`` fraction correct."""
    columns = [[] for _ in range(stages)]
    groups = []
    for group, n in sizes.items():
        wrong = round(drops[group] * n)
        for j in range(n):
            groups.append(group)
            columns[0].append(1.0)
            columns[1].append(1.0)
            columns[2].append(0.0 if j < wrong else 1.0)
    return task_records("A", columns, groups) + constant_task("B", [0.5, 0.5, 0.5])


def test_small_group_is_reported_flagged_and_excluded_from_biased_forgetting():
    recs = groups_records({"big1": 20, "big2": 40, "tiny": 4}, {"big1": 0.25, "big2": 0.5, "tiny": 1.0})
    m = run(recs, info({"A": 1, "B": 2}), STAGES, min_group_size=20)["metrics"]
    tiny = m["group_forgetting"]["A/tiny"]
    assert tiny["value"] == pytest.approx(1.0) and tiny["small"] is True and tiny["n"] == 4
    assert m["group_forgetting"]["A/big1"]["small"] is False
    bf = m["biased_forgetting"]["A"]
    assert bf["value"] == pytest.approx(0.25)  # 0.5 - 0.25, the tiny group's 1.0 is not compared
    assert bf["groups"] == ["big1", "big2"] and bf["excluded_groups"] == ["tiny"] and bf["min_group_size"] == 20
    assert m["worst_group"]["A"]["value"] == "big2"
    overall = (0.25 * 20 + 0.5 * 40 + 4) / 64
    assert m["forgetting"]["A"]["value"] == pytest.approx(overall)
    assert m["worst_group_excess"]["A"]["value"] == pytest.approx(0.5 - overall)


def test_fewer_than_two_big_groups_makes_biased_forgetting_missing():
    recs = groups_records({"big": 30, "tiny": 3}, {"big": 0.5, "tiny": 0.0})
    m = run(recs, info({"A": 1, "B": 2}), STAGES, min_group_size=20)["metrics"]
    for name in ("biased_forgetting", "biased_forgetting_std", "worst_group", "worst_group_excess",
                 "group_effect_pvalue"):
        assert m[name]["A"]["value"] is None, name
        assert m[name]["A"]["excluded_groups"] == ["tiny"]
    assert m["group_forgetting"]["A/tiny"]["value"] == pytest.approx(0.0)  # still reported


def random_records(n_per_group, p_after, seed, p_before=0.9):
    rng = np.random.default_rng(seed)
    columns, groups = [[], [], []], []
    for group, p in p_after.items():
        for _ in range(n_per_group):
            groups.append(group)
            columns[0].append(float(rng.random() < 0.5))
            columns[1].append(float(rng.random() < p_before))
            columns[2].append(float(rng.random() < p))
    return task_records("A", columns, groups) + constant_task("B", [0.5, 0.5, 0.5])


def test_bootstrap_cis_contain_the_estimate_and_shrink_with_more_data():
    widths = {}
    for n in (60, 1500):
        recs = random_records(n, {"x": 0.5, "y": 0.7, "z": 0.8}, seed=n)
        m = run(recs, info({"A": 1, "B": 2}), STAGES, n_boot=500)["metrics"]
        entries = [m["forgetting"]["A"], m["biased_forgetting"]["A"],
                   *[m["group_forgetting"][f"A/{g}"] for g in "xyz"]]
        for e in entries:
            assert e["ci_low"] <= e["value"] <= e["ci_high"]
            assert e["ci_low"] < e["ci_high"]
        widths[n] = [e["ci_high"] - e["ci_low"] for e in entries]
    for small, big in zip(widths[60], widths[1500]):
        assert big < small / 2.5  # ~ sqrt(25) = 5 times narrower


def test_paired_bootstrap_sees_no_noise_when_every_example_drops_by_the_same_amount():
    # paired differences are all exactly 0.5, so the forgetting CI collapses to a point although scores vary a lot
    rng = np.random.default_rng(3)
    before = rng.uniform(0.5, 1.0, 200)
    recs = task_records("A", [before, before, before - 0.5], ["x", "y"] * 100) + constant_task("B", [0.5] * 3)
    f = run(recs, info({"A": 1, "B": 2}), STAGES)["metrics"]["forgetting"]["A"]
    assert f["ci_low"] == pytest.approx(0.5) and f["ci_high"] == pytest.approx(0.5)


def test_permutation_pvalue_is_uniform_under_the_null():
    rng = np.random.default_rng(123)
    labels = np.repeat(["a", "b", "c"], 30)
    pvalues = []
    for k in range(100):
        diffs = rng.normal(size=labels.size)
        p, _ = permutation_pvalue(diffs, labels, 200, np.random.default_rng(k))
        pvalues.append(p)
    pvalues = np.array(pvalues)
    assert 0.01 <= np.mean(pvalues < 0.05) <= 0.12
    assert 0.35 <= np.mean(pvalues < 0.5) <= 0.65
    assert pvalues.min() >= 1 / 201  # never 0


def test_permutation_pvalue_small_under_a_planted_group_effect():
    rng = np.random.default_rng(5)
    labels = np.repeat(["a", "b", "c"], 100)
    diffs = rng.normal(size=300) + np.where(labels == "c", 0.6, 0.0)
    p, observed = permutation_pvalue(diffs, labels, 1000, np.random.default_rng(0))
    assert p < 0.01 and observed > 0


def test_group_effect_pvalue_end_to_end():
    ti = info({"A": 1, "B": 2})
    planted = run(random_records(150, {"x": 0.3, "y": 0.9}, seed=1), ti, STAGES, n_boot=500)["metrics"]
    null = run(random_records(150, {"x": 0.6, "y": 0.6}, seed=2), ti, STAGES, n_boot=500)["metrics"]
    assert planted["group_effect_pvalue"]["A"]["value"] < 0.01
    assert planted["group_effect_pvalue"]["A"]["statistic"] == "between_group_ss"
    assert null["group_effect_pvalue"]["A"]["value"] > 0.05


def test_range_ci_is_bias_corrected_and_floored():
    import numpy as np

    from chainforget.metrics.groups import bias_corrected_range_ci

    rng = np.random.default_rng(0)
    samples = 0.1 + 0.25 + rng.normal(0, 0.05, 2000)  # resampled ranges sit 0.25 above the estimate 0.1
    low, high, bias = bias_corrected_range_ci(samples, 0.1)
    assert bias == pytest.approx(0.25, abs=0.01)
    assert low < 0.1 < high and np.percentile(samples, 2.5) > 0.1  # the plain interval would exclude the estimate
    low, high, _ = bias_corrected_range_ci(np.array([0.3, 0.35, 0.4]), 0.01)
    assert low == 0.0 and high >= 0.0
    assert bias_corrected_range_ci(None, 0.1) == (None, None, None)
