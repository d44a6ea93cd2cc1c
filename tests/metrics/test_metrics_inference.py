"""The inference engine behind every printed interval: its covariance is the joint cluster bootstrap's, its p-values
invert its intervals, and seeded simulations in the quick and paper presets' designs show coverage 0.93-0.97 (size
0.03-0.07) for differences with seeds, and at least 0.93 for the order-asymmetry ratio difference.

Monte Carlo SE of a coverage near 0.95: 0.007 at 1,000 replications, 0.011 at 400 (stated in each assertion)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chainforget.metrics import inference as inf
from chainforget.metrics import simulate_inference as si
from chainforget.metrics.uncertainty import bootstrap

QUICK_BBQ = si.layout([20] * 9, [7] * 9, unit_size=2)  # 9 categories x 20, context pairs in ~7 templates each
ACC = (180, 0.2, 0.18, "acc")  # BBQ-like first task: 0/1 scores, gains 0.2, forgets 0.18 (share 0.9)
QUICK_GSM8K = (12, 0.166, 1.02, "nats")  # the quick preset's GSM8K: 12 examples, gain 0.166, forgets 610%


def _in_band(result: dict, low: float = 0.93, high: float = 0.97) -> bool:
    return low <= result["coverage"] <= high


def test_covariance_is_what_a_joint_cluster_bootstrap_estimates():
    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b", "c"], 100)
    clusters = [f"t{i % 13}" for i in range(300)]
    x = rng.normal(size=(300, 3)) + 0.1 * (np.arange(300) % 13)[:, None]
    cov, df = inf.eval_covariance(x, groups, clusters)
    boot = np.cov(bootstrap(x, groups, 20000, rng, clusters).overall, rowvar=False)
    assert df == 3 * 12
    assert np.allclose(cov * 12 / 13, boot, rtol=0.08, atol=2e-4)  # the bootstrap shrinks by (C - 1) / C


def test_p_inverts_the_interval_and_single_cells_are_the_stored_entry():
    rng = np.random.default_rng(1)
    for _ in range(20):
        s, n = int(rng.integers(1, 4)), 60
        x = rng.normal(0.1, 1.0, (s, n)) + rng.normal(0, 0.1, (s, 1))
        est = inf.difference(x, rng.normal(0.0, 1.0, (s, n)), ["g"] * n)
        assert (not est.ci_low <= 0 <= est.ci_high) == (est.p < 0.05)
    one = inf.cell([(0.2, -0.3, 1.4)], bounds=(-1.0, 1.0))
    assert one.triple() == (0.2, -0.3, 1.0) and one.seeds == 1  # as stored, clipped to the declared range
    assert inf.cell([(None, None, None)], missing="gain <= 0").missing == "gain <= 0"


def test_a_ratio_whose_gain_is_not_clearly_positive_is_unbounded_not_dropped():
    rng = np.random.default_rng(2)
    clear = inf.ratio(rng.normal(0.5, 0.3, (1, 200)), rng.normal(0.6, 0.3, (1, 200)), ["g"] * 200)
    vague = inf.ratio(rng.normal(0.5, 0.3, (1, 12)), rng.normal(0.1, 0.3, (1, 12)), ["g"] * 12)
    bounded = inf.ratio_difference(clear, clear)
    assert bounded.unbounded is None and bounded.ci_low < 0 < bounded.ci_high
    low, high = clear.interval()
    assert low < clear.value < high and high - clear.value > clear.value - low  # right-skewed, as a ratio is
    est = inf.ratio_difference(clear, vague)
    assert est.unbounded == "both" and est.ci_low is None and est.ci_high is None and est.value is not None
    # p and interval are one statistic: p < 0.05 exactly when the 95% interval excludes 0, and the 1 - p interval
    # just reaches 0
    for forget in (0.55, 0.6, 0.65, 0.7):
        other = inf.ratio(rng.normal(forget, 0.3, (1, 200)), rng.normal(0.6, 0.3, (1, 200)), ["g"] * 200)
        est = inf.ratio_difference(other, clear)
        assert (est.ci_low > 0) == (est.p < 0.05)
        if est.p > 1e-6:
            low_p, _ = inf.mover(other.spec(), clear.spec(), 1 - est.p)
            assert float(low_p) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("n_seeds, seed_sd, reps, rng_seed", [
    (1, 0.0, 1000, 10), (2, 0.2, 1000, 21), (2, 0.5, 1000, 22), (3, 0.0, 1000, 30), (3, 0.2, 1000, 31),
    (3, 0.5, 1000, 32), (5, 0.2, 1000, 51), (5, 0.5, 1000, 52)])
def test_difference_with_seeds_is_calibrated_in_the_quick_design(n_seeds, seed_sd, reps, rng_seed):
    """Method minus baseline on the quick preset's BBQ draw; truth 0, so coverage = 1 - size (MC SE 0.007)."""
    result = si.difference_calibration(*QUICK_BBQ, n_seeds, seed_sd, reps, rng_seed)
    assert _in_band(result) and 0.03 <= result["excludes_zero"] <= 0.07, result


def test_difference_covers_a_planted_effect():
    result = si.difference_calibration(*QUICK_BBQ, 3, 0.3, 1000, 7, effect=0.8)
    assert result["truth"] > 0.1 and _in_band(result) and result["excludes_zero"] > 0.25, result  # power, not size


@pytest.fixture(scope="module")
def bbq_split():
    """The shipped BBQ evaluation split: 15,900 examples in 9 categories and 141 templates of 8-480 examples."""
    from chainforget.plugins import registries

    examples = registries("tasks").get("bbq").eval_examples()
    return si.from_labels([e.group for e in examples], [e.meta["template"] for e in examples])


@pytest.mark.parametrize("seed_sd, rng_seed", [(0.0, 5), (0.2, 7), (0.5, 10)])
def test_difference_with_three_seeds_is_calibrated_on_the_real_bbq_split(bbq_split, seed_sd, rng_seed):
    """The paper preset's design: 3 seeds on BBQ's own categories and templates (400 reps: MC SE 0.011)."""
    result = si.difference_calibration(*bbq_split, 3, seed_sd, 400, rng_seed, chunk=20)
    assert _in_band(result) and 0.03 <= result["excludes_zero"] <= 0.07, result


def test_order_asymmetry_in_the_quick_design_covers_and_says_when_it_is_unbounded():
    """findings (1) in the quick preset: BBQ first vs 12 GSM8K examples in nats (2,000 reps: MC SE 0.005)."""
    result = si.asymmetry_calibration(ACC, QUICK_GSM8K, 2000, 1, first_layout=QUICK_BBQ)
    assert result["coverage"] >= 0.93 and result["open"] > 0.3, result  # most gains of 12 examples are unclear
    null = si.asymmetry_calibration(ACC, (12, 0.166, 0.149, "nats"), 2000, 2, first_layout=QUICK_BBQ)
    assert null["coverage"] >= 0.93 and null["excludes_zero"] <= 0.07, null
    for res in (result, null):  # misses are not piled on one side by dropped resamples
        assert max(res["misses"].values()) <= 0.035, res


@pytest.mark.parametrize("other, truth", [((100, 0.3, 0.27, "nats"), 0.0), ((100, 0.3, 0.9, "nats"), -2.1)])
def test_order_asymmetry_with_clear_gains_is_calibrated_both_ways(other, truth):
    result = si.asymmetry_calibration(ACC, other, 2000, 3, first_layout=QUICK_BBQ)
    assert math.isclose(result["truth"], truth, abs_tol=1e-9) and result["open"] == 0.0
    assert _in_band(result), result
    assert abs(result["misses"]["interval_below_truth"] - result["misses"]["interval_above_truth"]) < 0.02, result


def test_order_asymmetry_with_seeds_holds_training_randomness():
    result = si.asymmetry_calibration(ACC, (100, 0.3, 0.27, "nats"), 1000, 4, n_seeds=3, seed_sd=0.1,
                                      first_layout=QUICK_BBQ)
    assert result["coverage"] >= 0.93 and result["excludes_zero"] <= 0.07, result


def test_quantiles_match_scipy():
    """The Newton-refined quantiles every interval uses (checked against scipy, which the package does not import)."""
    from scipy import stats

    from chainforget.metrics.distributions import normal_ppf, t_ppf

    for p in (0.6, 0.8, 0.95, 0.975, 0.999, 1e-4, 0.3):
        assert normal_ppf(p) == pytest.approx(stats.norm.ppf(p), rel=1e-9, abs=1e-9)
        for df in (1, 2, 4, 11, 54, 300):
            assert t_ppf(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8, abs=1e-9)


def test_order_asymmetry_with_three_seeds_on_the_real_bbq_split(bbq_split):
    """The paper preset's design: BBQ first on its shipped split vs a 1,000-example accuracy task (BoolQ-like),
    3 seeds with training noise; no asymmetry. With 3 seeds the interval is conservative (400 reps: MC SE 0.011)."""
    result = si.asymmetry_calibration((15900, 0.1, 0.05, "acc"), (1000, 0.1, 0.05, "acc"), 400, 3, n_seeds=3,
                                      seed_sd=0.1, first_layout=bbq_split, chunk=20)
    assert result["coverage"] >= 0.93 and result["excludes_zero"] <= 0.07 and result["open"] == 0.0, result


def test_a_stored_unbounded_ratio_stays_unbounded_in_every_cell():
    from chainforget.metrics.estimates import stored_cell

    open_run = {"metrics": {"relative_forgetting": {"gsm8k": {"value": 6.1, "ci_low": None, "ci_high": None,
                                                              "unbounded": "both"}}}}
    clear_run = {"metrics": {"relative_forgetting": {"gsm8k": {"value": 5.0, "ci_low": 3.0, "ci_high": 8.0}}}}
    for runs in ([open_run], [open_run, clear_run]):
        est = stored_cell(runs, "relative_forgetting", "gsm8k")
        assert est.unbounded == "both" and est.ci_low is None and est.ci_high is None and est.value is not None
    assert stored_cell([clear_run], "relative_forgetting", "gsm8k").triple() == (5.0, 3.0, 8.0)


def test_a_stored_interval_with_one_finite_end_shows_the_other_as_open():
    from chainforget.metrics.estimates import stored_cell

    run = {"metrics": {"biased_forgetting": {"bbq": {"value": 0.3, "ci_low": 0.1, "ci_high": None, "p": 0.01}}}}
    est = stored_cell([run], "biased_forgetting", "bbq", bounds=(0.0, None))
    assert (est.value, est.ci_low, est.ci_high, est.unbounded, est.p) == (0.3, 0.1, None, "high", 0.01)
