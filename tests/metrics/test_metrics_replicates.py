"""Seeds as replicates of a stored cell (``inference.cell``, what the leaderboard, compare and findings show): the
across-seed interval covers the cell's true value (seeded simulation) and stays in the metric's declared range."""

import numpy as np
import pytest

from chainforget.metrics.inference import cell
from chainforget.metrics.replicates import se_from_interval


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
@pytest.mark.parametrize("seed_sd", [0.0, 0.02, 0.06])
def test_across_seed_interval_covers_the_truth(n_seeds, seed_sd):
    """Value of seed s = truth + e (evaluation sample, shared by all seeds, sd 0.02, known SE) + u_s (training).

    Stored cells know only each run's SE, not how much of the evaluation noise the seeds share, so the interval
    counts it whole: conservative (0.93-0.99) when the seeds' evaluation errors are the same."""
    rng = np.random.default_rng(100 * n_seeds + int(1000 * seed_sd))
    hits, reps = 0, 1000
    for _ in range(reps):
        values = 0.3 + rng.normal(0, 0.02) + (rng.normal(0, seed_sd, n_seeds) if seed_sd else np.zeros(n_seeds))
        ses = 0.02 * np.sqrt(rng.chisquare(60, n_seeds) / 60)  # each run's own (estimated) standard error
        est = cell([(v, v - 1.96 * s, v + 1.96 * s) for v, s in zip(values, ses)])
        hits += est.ci_low <= 0.3 <= est.ci_high
    assert 0.93 <= hits / reps <= 0.99, hits / reps


def test_interval_respects_the_declared_range():
    est = cell([(0.0, -0.2, 0.2), (0.05, -0.15, 0.25)], bounds=(0.0, None))
    assert est.ci_low == 0.0 and est.ci_high > est.value > 0
    assert cell([(0.9, 0.7, 1.1)], bounds=(-1.0, 1.0)).ci_high == 1.0  # one seed: the stored interval, clipped


def test_se_from_interval_inverts_a_normal_interval():
    assert se_from_interval(-1.96, 1.96) == pytest.approx(1.0, rel=1e-4)
    assert se_from_interval(None, 1.0) is None
