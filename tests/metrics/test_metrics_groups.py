"""Per-group and biased forgetting by hand; cluster-bootstrap coverage; the group test under a null and a planted
effect; the spread interval agrees with the test (calibration proper: test_metrics_calibration.py)."""

import numpy as np
import pytest
from metrics_fixtures import constant_task, info, task_records
from test_metrics_forgetting import STAGES, TWO_STEP_INFO, run, two_step_records

from chainforget.metrics import simulate as sim
from chainforget.metrics.spread import analyse, collapse, group_intervals, group_test
from chainforget.metrics.uncertainty import bootstrap, percentile_ci


def test_two_step_chain_per_group_by_hand():
    m = run(two_step_records(), TWO_STEP_INFO, STAGES)["metrics"]
    g1, g2 = m["group_forgetting"]["A/g1"], m["group_forgetting"]["A/g2"]
    assert g1["value"] == pytest.approx(0.5) and g2["value"] == pytest.approx(1.0)
    assert g1["n"] == 2 and g1["small"] is False
    assert m["biased_forgetting_range"]["A"]["value"] == pytest.approx(0.5)
    assert m["biased_forgetting"]["A"]["range"] == pytest.approx(0.5)
    assert m["biased_forgetting_std"]["A"]["value"] == pytest.approx(0.25)  # population std of {0.5, 1.0}
    bf = m["biased_forgetting"]["A"]
    assert bf["value"] >= 0 and bf["ci_low"] <= bf["ci_high"] and 0 < bf["p"] <= 1
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
    bf = m["biased_forgetting_range"]["A"]
    assert bf["value"] == pytest.approx(0.25)  # 0.5 - 0.25, the tiny group's 1.0 is not compared
    assert bf["groups"] == ["big1", "big2"] and bf["excluded_groups"] == ["tiny"] and bf["min_group_size"] == 20
    assert m["worst_group"]["A"]["value"] == "big2"
    overall = (0.25 * 20 + 0.5 * 40 + 4) / 64
    assert m["forgetting"]["A"]["value"] == pytest.approx(overall)
    assert m["worst_group_excess"]["A"]["value"] == pytest.approx(0.5 - overall)


def test_fewer_than_two_big_groups_makes_biased_forgetting_missing():
    recs = groups_records({"big": 30, "tiny": 3}, {"big": 0.5, "tiny": 0.0})
    m = run(recs, info({"A": 1, "B": 2}), STAGES, min_group_size=20)["metrics"]
    for name in ("biased_forgetting", "biased_forgetting_range", "biased_forgetting_std", "worst_group",
                 "worst_group_excess", "group_effect_pvalue"):
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


def test_bootstrap_cis_shrink_with_more_data():
    widths = {}
    for n in (60, 1500):
        recs = random_records(n, {"x": 0.5, "y": 0.7, "z": 0.8}, seed=n)
        m = run(recs, info({"A": 1, "B": 2}), STAGES, n_boot=500)["metrics"]
        entries = [m["forgetting"]["A"], *[m["group_forgetting"][f"A/{g}"] for g in "xyz"]]
        widths[n] = [e["ci_high"] - e["ci_low"] for e in entries]
        assert all(m["group_forgetting"][f"A/{g}"]["ci"] == "simultaneous" for g in "xyz")
    for small, big in zip(widths[60], widths[1500]):
        assert big < small / 2.5  # ~ sqrt(25) = 5 times narrower


@pytest.mark.parametrize("templates", [None, (6,) * 9])
def test_cluster_bootstrap_interval_of_forgetting_covers_the_truth(templates):
    """Seeded coverage of the forgetting CI (9 groups x 30 examples; with 6 shared templates per group the
    examples are correlated and resampling examples instead of templates would undercover)."""
    rng = np.random.default_rng(7 if templates is None else 8)
    hits, reps = 0, 300
    for _ in range(reps):
        diffs, groups, clusters = sim.design([30] * 9, np.full(9, 0.2), 0.5, rng, templates,
                                             0.0 if templates is None else 0.25)
        boot = bootstrap(diffs, groups, 300, rng, None if clusters is None else clusters.astype(str))
        low, high = percentile_ci(boot.overall)
        hits += low <= 0.2 <= high
    assert 0.91 <= hits / reps <= 0.98


def test_paired_bootstrap_sees_no_noise_when_every_example_drops_by_the_same_amount():
    # paired differences are all exactly 0.5, so the forgetting CI collapses to a point although scores vary a lot
    rng = np.random.default_rng(3)
    before = rng.uniform(0.5, 1.0, 200)
    recs = task_records("A", [before, before, before - 0.5], ["x", "y"] * 100) + constant_task("B", [0.5] * 3)
    f = run(recs, info({"A": 1, "B": 2}), STAGES)["metrics"]["forgetting"]["A"]
    assert f["ci_low"] == pytest.approx(0.5) and f["ci_high"] == pytest.approx(0.5)


def test_group_test_pvalue_is_uniform_under_the_null():
    rng = np.random.default_rng(123)
    labels = np.repeat(["a", "b", "c"], 30)
    pvalues = []
    for k in range(100):
        p, _ = group_test(collapse(rng.normal(size=labels.size), labels), 200, np.random.default_rng(k))
        pvalues.append(p)
    pvalues = np.array(pvalues)
    assert 0.01 <= np.mean(pvalues < 0.05) <= 0.12
    assert 0.35 <= np.mean(pvalues < 0.5) <= 0.65
    assert pvalues.min() >= 1 / 201  # never 0


def test_group_test_pvalue_small_under_a_planted_group_effect():
    rng = np.random.default_rng(5)
    labels = np.repeat(["a", "b", "c"], 100)
    diffs = rng.normal(size=300) + np.where(labels == "c", 0.6, 0.0)
    p, observed = group_test(collapse(diffs, labels), 1000, np.random.default_rng(0))
    assert p < 0.01 and observed > 0


def test_spread_interval_excludes_zero_exactly_when_the_test_rejects():
    # One statistic: 0 is in the confidence set iff p >= 0.05; a printed low end above 0 implies p < 0.05, and
    # p < 0.05 with a printed low end of 0 means the set is (0, high] (zero_excluded).
    rng = np.random.default_rng(9)
    design = sim.seed_design("templates", [(4, 4, 6, 6, 8)] * 9, 0.5)
    theta = 0.03 + np.repeat([0.0, 0.05, 0.1, 0.2], 40)[:, None] * rng.standard_normal((160, 9))
    result = analyse(sim.seeded_batch(design, theta, 3, 0.05, rng), 199, rng)
    estimate, low, high = result.interval()
    assert np.all((low <= estimate + 1e-9) & (estimate <= high + 1e-9))
    assert np.all(result.p[low > 0] < 0.05)
    zero_in = result.pvalues(np.zeros_like(low))
    assert np.all((result.p >= 0.05) | (low > 0) | (zero_in[0] >= 0.025))  # (0, high]: no tau > 0 rejected at 0+
    assert np.count_nonzero(low > 0) > 10 and np.count_nonzero(result.p >= 0.05) > 10  # both cases happened


def test_test_and_interval_weight_templates_by_their_size():
    # Two groups: a's templates (sizes 2 and 40) disagree; the size-weighted mean is what the test and the
    # interval both use, not the mean of template means.
    values = np.r_[np.ones(2), np.zeros(40), np.full(42, 0.5)]
    groups = ["a"] * 42 + ["b"] * 42
    clusters = ["t1"] * 2 + ["t2"] * 40 + [f"u{k}" for k in range(6) for _ in range(7)]
    cl = collapse(values + np.random.default_rng(0).normal(0, 0.01, 84), groups, clusters)
    result = analyse(cl.batch(), 99, np.random.default_rng(1))
    assert result.means[0, 0] == pytest.approx(2 / 42, abs=0.01)  # not (1 + 0) / 2


def test_seed_group_interaction_counts_only_the_excess_over_evaluation_noise():
    # Seeds that score the same examples with no training noise: the interaction is evaluation noise only, so
    # the excess variance is ~0 and the group variances are the evaluation part alone.
    rng = np.random.default_rng(4)
    design = sim.seed_design("templates", [(10,) * 8] * 6, 0.5)
    quiet = analyse(sim.seeded_batch(design, np.full((200, 6), 0.03), 3, 0.0, rng), 19, rng)
    noisy = analyse(sim.seeded_batch(design, np.full((200, 6), 0.03), 3, 0.15, rng), 19, rng)
    assert np.sqrt(np.mean(quiet.seed_group_var)) < 0.03
    assert 0.12 <= np.sqrt(np.mean(noisy.seed_group_var)) <= 0.18  # recovers the seed x group SD 0.15


def test_group_intervals_stay_in_range_and_say_when_templates_are_too_few():
    rng = np.random.default_rng(2)
    values = rng.integers(0, 2, 120).astype(float) - rng.integers(0, 2, 120)
    groups = ["big"] * 60 + ["few"] * 40 + ["two"] * 20
    clusters = [f"b{k % 12}" for k in range(60)] + [f"f{k % 3}" for k in range(40)] + [f"t{k % 2}" for k in range(20)]
    res = group_intervals(collapse(values, groups, clusters), 500, rng, bounds=(-1.0, 1.0))
    by = dict(zip(res.names, zip(res.low, res.high, res.reasons)))
    assert by["two"][2] == "too few templates (2) for an interval" and np.isnan(by["two"][0])
    for low, high, reason in by.values():
        if reason is None:
            assert -1.0 <= low <= high <= 1.0
        else:
            assert reason.startswith("too few templates (")
    assert by["big"][2] is None


def test_group_effect_pvalue_end_to_end():
    ti = info({"A": 1, "B": 2})
    planted = run(random_records(150, {"x": 0.3, "y": 0.9}, seed=1), ti, STAGES, n_boot=500)["metrics"]
    null = run(random_records(150, {"x": 0.6, "y": 0.6}, seed=2), ti, STAGES, n_boot=500)["metrics"]
    assert planted["group_effect_pvalue"]["A"]["value"] < 0.01
    assert planted["group_effect_pvalue"]["A"]["statistic"] == "studentized_q"
    assert planted["biased_forgetting"]["A"]["ci_low"] > 0
    assert planted["biased_forgetting"]["A"]["p"] == planted["group_effect_pvalue"]["A"]["value"]
    assert null["group_effect_pvalue"]["A"]["value"] > 0.05
    assert null["biased_forgetting"]["A"]["ci_low"] == 0.0
