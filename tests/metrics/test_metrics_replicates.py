"""Seeds as replicates: the across-seed interval covers the cell's true value (seeded simulation) and stays in range."""

import numpy as np
import pytest

from chainforget.metrics.replicates import combine_seeds, se_from_interval


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
@pytest.mark.parametrize("seed_sd", [0.0, 0.02, 0.06])
def test_across_seed_interval_covers_the_truth(n_seeds, seed_sd):
    """Value of seed s = truth + e (evaluation sample, shared by all seeds, sd 0.02, known SE) + u_s (training)."""
    rng = np.random.default_rng(100 * n_seeds + int(1000 * seed_sd))
    hits, reps = 0, 1000
    for _ in range(reps):
        values = 0.3 + rng.normal(0, 0.02) + rng.normal(0, seed_sd, n_seeds) if seed_sd else \
            np.full(n_seeds, 0.3 + rng.normal(0, 0.02))
        ses = 0.02 * np.sqrt(rng.chisquare(60, n_seeds) / 60)  # each run's own (estimated) standard error
        _, low, high, _ = combine_seeds(values, ses)
        hits += low <= 0.3 <= high
    assert 0.93 <= hits / reps <= 0.99, hits / reps


def test_interval_respects_the_declared_range():
    mean, low, high, _ = combine_seeds([0.0, 0.05], [0.1, 0.1], bounds=(0.0, None))
    assert low == 0.0 and high > mean > 0


def test_se_from_interval_inverts_a_normal_interval():
    assert se_from_interval(-1.96, 1.96) == pytest.approx(1.0, rel=1e-4)
    assert se_from_interval(None, 1.0) is None
