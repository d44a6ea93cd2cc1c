"""Seeded Monte-Carlo proof that the biased-forgetting statistics are calibrated (docs/metrics.md, "Simulation
tables"), in the designs users run: the shipped BBQ eval split, the paper preset's samples of BBQ and ToxiGen with
3 seeds, and the quick preset's 20 BBQ examples per category, with 1 to 5 seeds and training noise that shifts each
seed's group means (seed x group SD 0 to 0.10).

Each check runs the product's own ``spread.analyse`` on hundreds of simulated tasks at once and fails when
calibration breaks. Monte Carlo SE of a size near 0.05 from R replications: sqrt(0.05 * 0.95 / R), 0.009 at 600;
of a coverage near 0.95: the same. bench/bench_stats_calibration.py runs the full grid with more replications.
"""

import pytest

from chainforget.metrics import simulate as sim

CHURN = [0.2, 0.6, 0.2, 0.4, 0.6, 0.2, 0.6, 0.3, 0.6]  # unequal noise across categories
FULL = sim.seed_design("BBQ eval split", sim.BBQ_EVAL_TEMPLATE_SIZES, CHURN)
PAPER_BBQ = sim.seed_design("paper preset's BBQ sample", sim.BBQ_PAPER_TEMPLATE_SIZES, CHURN)
QUICK = sim.seed_design("quick preset's BBQ sample", sim.BBQ_QUICK_TEMPLATE_SIZES, 0.6)
TOXIGEN = sim.flat_design("paper preset's ToxiGen sample", sim.TOXIGEN_PAPER_SIZES, 0.3)


def test_three_seeds_with_training_noise_hold_the_size_in_the_paper_presets_designs():
    # The old template-permutation test rejected 17% here: it scrambled each seed's group shifts. 750 replications
    # pooled (MC SE 0.008) in the band, each design far from 0.17.
    rates = [sim.seeded_calibration(design, 3, 0.10, reps, seed)["rejection_rate"]
             for design, reps, seed in ((FULL, 250, 11), (PAPER_BBQ, 300, 12), (TOXIGEN, 200, 13))]
    assert max(rates) <= 0.09, rates
    assert 0.03 <= (250 * rates[0] + 300 * rates[1] + 200 * rates[2]) / 750 <= 0.07, rates


def test_three_seed_spread_interval_covers_with_training_noise():
    results = [sim.seeded_calibration(design, 3, 0.10, 250, seed, tau=0.1)
               for design, seed in ((FULL, 21), (PAPER_BBQ, 22), (QUICK, 23))]
    assert min(r["coverage"] for r in results) >= 0.91, results
    assert 0.93 <= sum(r["coverage"] for r in results) / 3 <= 0.97, results


def test_seeds_grid_in_the_quick_presets_design():
    # 2, 3 and 5 seeds x seed x group SD 0, 0.05, 0.10: 1,080 replications pooled (MC SE 0.007), each cell
    # (120 replications, MC SE 0.02) well below the old 0.17.
    rates = []
    for k, (seeds, sd) in enumerate((s, d) for s in (2, 3, 5) for d in (0.0, 0.05, 0.10)):
        rates.append(sim.seeded_calibration(QUICK, seeds, sd, 120, 300 + k)["rejection_rate"])
        assert rates[-1] <= 0.125, (seeds, sd, rates[-1])  # 0.05 + 3.8 MC SE
    assert 0.03 <= sum(rates) / len(rates) <= 0.07, rates


def test_quick_design_spread_interval_covers_a_large_spread_with_seeds():
    results = [sim.seeded_calibration(QUICK, seeds, 0.05, 200, 30 + seeds, tau=0.3) for seeds in (2, 5)]
    assert min(r["coverage"] for r in results) >= 0.91, results
    assert 0.93 <= sum(r["coverage"] for r in results) / 2 <= 0.975, results


# Templates of 1 to 20 examples (sizes drawn once, seed 3): equal weights for template means gave 0.069 here.
ONE_TO_TWENTY = sim.seed_design("templates of 1-20", [
    (17, 2, 4, 5, 4, 17, 18, 12), (1, 2, 7, 9, 13, 10, 6, 4), (14, 15, 1, 3, 10, 8, 18, 11),
    (9, 9, 14, 12, 4, 15, 16, 20), (16, 6, 7, 13, 14, 14, 18, 6), (19, 1, 2, 20, 19, 6, 3, 7),
    (1, 18, 14, 12, 5, 10, 4, 16), (10, 1, 6, 15, 11, 8, 6, 2), (13, 14, 11, 19, 19, 5, 13, 13)], CHURN,
    unit_size=1, unit_sd=0.0)


def test_one_seed_size_in_the_shipped_split_the_quick_sample_and_uneven_templates():
    cases = ((FULL, 250, 41), (QUICK, 500, 42), (ONE_TO_TWENTY, 400, 43))
    rates = [sim.seeded_calibration(design, 1, 0.0, reps, seed)["rejection_rate"] for design, reps, seed in cases]
    assert max(rates) <= 0.08, rates
    assert 0.03 <= sum(rate * reps for rate, (_, reps, _) in zip(rates, cases)) / 1150 <= 0.07, rates


def test_one_seed_spread_interval_covers_the_true_spread():
    # 9 groups x 20 independent examples and the quick preset's templates, true spread 0, 0.1 and 0.3: 1,200
    # replications pooled (MC SE 0.006); each cell 200 (MC SE 0.015).
    coverages = []
    for design, seed in ((sim.flat_design("9 x 20", [20] * 9, 0.35), 1000), (QUICK, 2000)):
        for tau in (0.0, 0.1, 0.3):
            coverages.append(sim.seeded_calibration(design, 1, 0.0, 200, seed + int(100 * tau), tau=tau)["coverage"])
    assert min(coverages) >= 0.91, coverages
    assert 0.93 <= sum(coverages) / len(coverages) <= 0.97, coverages


@pytest.mark.parametrize("n_per_group,low,high", [(20, 0.18, 0.45), (60, 0.75, 0.97)])
def test_group_test_power_at_a_stated_effect(n_per_group, low, high):
    # One of 9 groups forgets 0.4 more than the others (churn 0.6, so an example's difference has variance ~0.6).
    # Theory (noncentral chi-square, lambda = 4.7 at 20 per group): power ~0.3; at 60 per group (lambda 14): ~0.87.
    power = sim.null_rejection_rate([n_per_group] * 9, [0.6] * 9, reps=120, seed=23, shift=0.4)
    assert low <= power <= high, power


def test_simultaneous_group_intervals_cover_every_group():
    for n_per_group, seed in ((20, 31), (100, 32)):
        coverage = sim.simultaneous_coverage(9, n_per_group, 0.1, reps=150, seed=seed)
        assert 0.92 <= coverage <= 0.995, (n_per_group, coverage)


def test_simultaneous_group_intervals_in_the_presets_designs_stay_in_range_and_cover():
    # Paper preset's BBQ sample with 3 seeds and training noise: every group gets an interval. Quick preset's sample
    # (4-8 templates of 2-8 examples): many groups get "too few templates" instead of [-1.4, 1.8]; the others,
    # clipped to [-1, 1], still cover together.
    paper = sim.group_interval_coverage(PAPER_BBQ, 3, 0.10, 0.1, 200, 51)
    assert 0.92 <= paper["coverage"] <= 0.99 and paper["no_interval"] < 0.01, paper
    quick = sim.group_interval_coverage(QUICK, 1, 0.0, 0.1, 200, 52)
    assert 0.92 <= quick["coverage"] <= 1.0 and 0.1 <= quick["no_interval"] <= 0.8, quick
    assert quick["mean_width"] <= 2.0
