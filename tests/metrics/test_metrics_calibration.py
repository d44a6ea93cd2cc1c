"""Seeded Monte-Carlo proof that the biased-forgetting statistics are calibrated (issue 15; docs/metrics.md).

Each check fails when calibration breaks: the spread interval's coverage, the group-effect test's size under
unequal variances, unequal group sizes and shared templates, its power, and the simultaneous per-group intervals.
The designs and the generator live in chainforget.metrics.simulate (bench/bench_stats_calibration.py runs the same
ones with more replications for the tables in docs/metrics.md).
"""

import pytest

from chainforget.metrics import simulate as sim

TEN_TIMES = [0.6 if s < 1500 else 0.06 for s in sim.BBQ_EVAL_SIZES]  # small categories noisy: the hard case


@pytest.mark.parametrize("n_per_group,reps", [(20, 400), (100, 300)])
@pytest.mark.parametrize("tau", [0.0, 0.1, 0.3])
def test_spread_interval_covers_the_true_spread(n_per_group, reps, tau):
    result = sim.spread_coverage(9, n_per_group, tau, reps, seed=1000 + n_per_group + int(100 * tau))
    assert 0.92 <= result["coverage"] <= 0.98, result


def test_group_test_size_with_unequal_variances_and_sizes():
    sizes = [n // 10 for n in sim.BBQ_EVAL_SIZES]  # the full eval split's proportions (43 to 344 per category)
    rate = sim.null_rejection_rate(sizes, TEN_TIMES, reps=600, seed=21)
    assert 0.03 <= rate <= 0.07, rate


def test_group_test_size_with_shared_templates():
    rate = sim.null_rejection_rate(sim.BBQ_EVAL_SIZES, TEN_TIMES, reps=600, seed=22,
                                   templates=sim.BBQ_EVAL_TEMPLATES, template_sd=0.15)
    assert 0.03 <= rate <= 0.07, rate


# The quick preset's BBQ sample: 20 per category drawn as both questions of 10 contexts, ~7 templates per category
# (61 templates over 9 categories); the two questions of a context share a strong extra shift, templates a milder one.
QUICK_DESIGN = {"templates": 7, "template_sd": 0.15, "unit_size": 2, "unit_sd": 0.3}


def test_group_test_size_with_the_quick_presets_paired_sample():
    # With 7 template clusters per category the permutation test is a little conservative (~0.035-0.04 over seeds),
    # never above the nominal 0.05: the band fails if it becomes anti-conservative or grossly conservative.
    design = {**QUICK_DESIGN, "templates": [QUICK_DESIGN["templates"]] * 9}
    rate = sim.null_rejection_rate([20] * 9, [0.6] * 9, reps=1500, seed=24, **design)
    assert 0.02 <= rate <= 0.065, rate


@pytest.mark.parametrize("tau", [0.0, 0.1, 0.3])
def test_spread_interval_covers_with_the_quick_presets_paired_sample(tau):
    result = sim.spread_coverage(9, 20, tau, 400, seed=2000 + int(100 * tau), **QUICK_DESIGN)
    assert 0.92 <= result["coverage"] <= 0.98, result


@pytest.mark.parametrize("n_per_group,low,high", [(20, 0.18, 0.45), (100, 0.85, 1.0)])
def test_group_test_power_at_a_stated_effect(n_per_group, low, high):
    # One of 9 groups forgets 0.4 more than the others (churn 0.6, so an example's difference has variance ~0.6).
    # Theory (noncentral chi-square, lambda = 4.7 at 20 per group): power ~0.3; at 100 per group: ~0.99.
    power = sim.null_rejection_rate([n_per_group] * 9, [0.6] * 9, reps=200, seed=23, shift=0.4)
    assert low <= power <= high, power


def test_simultaneous_group_intervals_cover_every_group():
    for n_per_group, seed in ((20, 31), (100, 32)):
        coverage = sim.simultaneous_coverage(9, n_per_group, 0.1, reps=200, seed=seed)
        assert 0.92 <= coverage <= 0.995, (n_per_group, coverage)
