"""The effects behind `chainforget findings`: interval = the coverage-tested seed combination, p inverts the interval,
the minimum detectable effect is detected 80% of the time (seeded simulations). The order-asymmetry interval and
differences with seeds are calibrated in test_metrics_inference.py."""

import numpy as np
import pytest

from chainforget.metrics import effects
from chainforget.metrics import simulate as sim


def test_one_cell_holds_both_variance_parts_and_p_inverts_the_interval():
    values, ses = [0.31, 0.22, 0.27], [0.03, 0.04, 0.035]
    e = effects.from_seeds(values, ses)
    half = np.sqrt(4.302653 ** 2 * np.var(values, ddof=1) / 3 + 1.959964 ** 2 * np.mean(ses) ** 2)
    assert (e.value, *e.interval()) == pytest.approx((np.mean(values), np.mean(values) - half, np.mean(values) + half),
                                                     rel=1e-5)
    p = e.pvalue()
    low_p, high_p = e.interval(confidence=1 - p)
    assert min(abs(low_p), abs(high_p)) == pytest.approx(0.0, abs=1e-7)  # the 1 - p interval ends at 0
    one = effects.from_seeds([0.1], [0.05])  # one seed: normal, p = 2 * (1 - Phi(2))
    assert one.pvalue() == pytest.approx(0.0455, abs=2e-4) and one.mde() == pytest.approx(2.8016 * 0.05, rel=1e-3)
    assert effects.from_seeds([0.1], [None]).interval() == (None, None)  # unknown SE: open, never invented


def test_interval_excludes_zero_exactly_when_p_is_below_alpha():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 4))
        e = effects.from_seeds(rng.normal(0.05, 0.05, n), rng.uniform(0.01, 0.05, n)).minus(
            effects.from_seeds(rng.normal(0, 0.05, 2), [0.02, 0.03]))
        low, high = e.interval()
        assert (not low <= 0 <= high) == (e.pvalue() < 0.05)


def test_normal_effect_at_its_mde_is_detected_80_percent_of_the_time():
    rng = np.random.default_rng(1)
    se = 0.04
    mde = effects.from_seeds([0.0], [se]).mde()
    hits = sum(effects.from_seeds([rng.normal(mde, se)], [se]).pvalue() < 0.05 for _ in range(2000))
    assert 0.77 <= hits / 2000 <= 0.83


def test_spread_mde_is_detected_about_80_percent_of_the_time():
    """The chi-square approximation of the stated spread MDE, checked against the real permutation test."""
    result = sim.spread_power_at_mde(9, 20, reps=250, seed=14)
    assert 0.6 <= result["power"] <= 0.9, result
    v = [0.02] * 9
    assert effects.spread_mde(v) == pytest.approx(np.sqrt(0.02 * (15.507 / 4.594 - 1)), rel=1e-3)


def test_no_variation_has_no_minimum_detectable_effect_and_says_so():
    from chainforget.report.findings import _verdict

    same = effects.Effect(0.0, ((0.0, 0),)).summary()
    assert same["mde"] is None and same["se"] == 0.0 and same["p"] == 1.0
    assert _verdict(same, "more", "less", " acc").startswith("identical on every evaluation example")
    shifted = effects.Effect(0.05, ((0.0, 0),)).summary()
    assert shifted["mde"] is None and "not estimable (no variation)" in _verdict(shifted, "more", "less", " acc")
    varied = effects.Effect(0.0, ((0.01, 0),)).summary()
    assert varied["mde"] == pytest.approx((1.959964 + 0.841621) * 0.1, rel=1e-4)
