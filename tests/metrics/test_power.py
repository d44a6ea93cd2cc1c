"""The power planner's claims, checked by seeded simulation with the product's own statistics: a study sized by the
planner (from a pilot's estimated variance components) rejects as often as the planner says, within 5 points, for
each of the three questions, and a study it calls underpowered misses the effect most of the time.

Data: per-example values with every component the planner models (template, example, seed x example, seed, seed x
group), normal; templates per group grow with the examples as the planner assumes, up to 12 (BBQ-like). Monte Carlo
SE of a power near 0.8 with 300 replications: 0.023.
"""

import math

import numpy as np
import pytest

from chainforget.metrics import inference
from chainforget.metrics import power as pw
from chainforget.metrics import spread as spread_stats
from chainforget.metrics.distributions import normal_cdf

G, PILOT_N, PILOT_K, MAX_K = 9, 20, 7, 12.0
TRUTH = {"template": 0.003, "example": 0.08, "residual": 0.06, "seed": 5e-5, "seed_by_group": 4e-4}


def draw(rng, reps, seeds, n, k, delta=0.0, tau=0.0, truth=TRUTH, G=G):  # noqa: N803 - the module's G by default
    """``[reps, seeds, G * n]`` values, group labels and template labels (``k`` templates per group)."""
    groups = np.repeat(np.arange(G), n)
    clusters = groups * k + np.tile(np.arange(n) % k, G)
    group_effect = tau * rng.standard_normal((reps, 1, G))[..., groups]
    shared = (rng.normal(0, math.sqrt(truth["template"]), (reps, 1, G * k))[..., clusters]
              + rng.normal(0, math.sqrt(truth["example"]), (reps, 1, G * n)))
    training = (rng.normal(0, math.sqrt(truth["seed"]), (reps, seeds, 1))
                + rng.normal(0, math.sqrt(truth["seed_by_group"]), (reps, seeds, G))[..., groups]
                + rng.normal(0, math.sqrt(truth["residual"]), (reps, seeds, G * n)))
    return delta + group_effect + shared + training, groups, clusters


@pytest.fixture(scope="module")
def pilot():
    """The true components, as a pilot of the quick design (3 seeds, 20 examples and 7 templates per group) would
    estimate them on average (the estimator's own test is below)."""
    seed = TRUTH["seed"] + TRUTH["seed_by_group"] / G  # the task mean's training randomness
    return pw.Components(TRUTH["template"], TRUTH["example"], TRUTH["residual"], seed, TRUTH["seed_by_group"], 3, G,
                         PILOT_N, PILOT_K, MAX_K, True)


def _templates(c, n):
    return int(round(c.templates_at(n)))


def test_components_are_estimated_without_bias():
    """Method of moments: the mean of the estimates over 150 pilots of the quick design with 3 seeds is the truth
    (variances large enough that the floor at 0 rarely binds)."""
    truth = {**TRUTH, "seed": 0.002, "template": 0.01, "seed_by_group": 0.004}
    expected = {**truth, "seed": truth["seed"] + truth["seed_by_group"] / G}
    rng = np.random.default_rng(0)
    values, groups, clusters = draw(rng, 150, 3, PILOT_N, PILOT_K, truth=truth)
    found = [pw.estimate(v, groups, clusters, max_templates=MAX_K) for v in values]
    for name in ("template", "example", "residual", "seed", "seed_by_group"):
        mean = float(np.mean([getattr(c, name) for c in found]))
        assert mean == pytest.approx(expected[name], rel=0.2 if name in ("example", "residual") else 0.3), name
    first = found[0]
    assert (first.pilot_seeds, first.groups, first.pilot_templates, first.max_templates) == (3, G, PILOT_K, MAX_K)


def test_units_drawn_together_are_not_taken_for_templates():
    """BBQ's eval sample draws both questions of a context together; a strong context shift (variance 0.1) shared by
    the pair must land in the per-example part (which more examples reduce), not in the template part (which they
    do not): with the units declared the template part is estimated near its truth, 0.003, on average (over 100
    pilots, unfloored; one pilot's estimate has an SE near 0.03), without them near 0.05."""
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(G), PILOT_N)
    clusters = groups * PILOT_K + np.tile((np.arange(PILOT_N) // 2) % PILOT_K, G)
    units = np.arange(G * PILOT_N) // 2
    with_units, without = [], []
    for _ in range(100):
        x = (rng.normal(0, math.sqrt(0.003), G * PILOT_K)[clusters] + rng.normal(0, math.sqrt(0.1), units.max() + 1)[units]
             + rng.normal(0, math.sqrt(0.08), (3, G * PILOT_N)))
        with_units.append(pw.estimate(x, groups, clusters, floor=False, units=units).template)  # unfloored: unbiased
        without.append(pw.estimate(x, groups, clusters, floor=False).template)
    assert abs(np.mean(with_units) - 0.003) < 0.01 and np.mean(without) > 0.03, (np.mean(with_units), np.mean(without))


def test_power_of_one_known_normal_part_is_the_closed_form():
    delta, se = 0.1, 0.04
    z = 1.959963984540054
    exact = normal_cdf(delta / se - z) + normal_cdf(-delta / se - z)
    assert pw.effect_power(delta, se ** 2, [pw.Part(se ** 2, 0)]) == pytest.approx(exact, abs=1e-9)


def _mitigation_rejections(rng, c, n, seeds, delta, reps):
    k = _templates(c, n)
    values, groups, clusters = draw(rng, reps, seeds, n, k, delta=delta)
    value, parts = inference.seed_parts(values, *inference.codes(groups, clusters))  # all replications at once
    return float(np.mean(np.abs(value) > inference.half_width(parts)))  # the interval excludes 0 (p < 0.05)


def test_mitigation_study_sized_by_the_planner_reaches_its_power(pilot):
    delta, seeds = 0.03, 5
    n = pw.smallest(lambda k: pw.mean_power(pilot, delta, k, seeds), 0.8, 2, 2000)
    claimed = pw.mean_power(pilot, delta, n, seeds)
    simulated = _mitigation_rejections(np.random.default_rng(1), pilot, n, seeds, delta, 300)
    assert abs(simulated - claimed) <= 0.05, (n, claimed, simulated)
    small = pw.mean_power(pilot, delta, PILOT_N, 3)  # the quick design with 3 seeds: underpowered
    missed = _mitigation_rejections(np.random.default_rng(2), pilot, PILOT_N, 3, delta, 300)
    assert small < 0.4 and missed < 0.5 and abs(missed - small) <= 0.05, (small, missed)


def _spread_rejections(rng, c, n, seeds, tau, reps):
    k = _templates(c, n)
    values, groups, clusters = draw(rng, reps, seeds, n, k, tau=tau)
    hits = 0
    for r in range(reps):
        cl = spread_stats.collapse(values[r], groups.astype(str), clusters.astype(str))
        hits += spread_stats.group_test(cl, 199, rng)[0] < 0.05  # the p the headline spread reports
    return hits / reps


def test_spread_study_sized_by_the_planner_reaches_its_power(pilot):
    tau, seeds = 0.05, 3
    n = pw.smallest(lambda k: pw.spread_power(pilot, tau, k, seeds), 0.8, 2, 2000)
    claimed = pw.spread_power(pilot, tau, n, seeds)
    simulated = _spread_rejections(np.random.default_rng(3), pilot, n, seeds, tau, 300)
    assert abs(simulated - claimed) <= 0.05, (n, claimed, simulated)
    small = pw.spread_power(pilot, tau, PILOT_N, seeds)
    missed = _spread_rejections(np.random.default_rng(4), pilot, PILOT_N, seeds, tau, 300)
    assert small < 0.4 and missed < 0.5 and abs(missed - small) <= 0.05, (small, missed)


# order asymmetry: each side's forgetting f and gain g drawn independently with these components (per example)
SAFETY = {"groups": 9, "gain": 0.15, "ratio": 0.9, "k": PILOT_K, "max_k": MAX_K, "n": PILOT_N,
          "f": {"template": 0.002, "example": 0.06, "residual": 0.04, "seed": 2e-5, "seed_by_group": 1e-4}}
CAPABILITY = {"groups": 1, "gain": 0.3, "ratio": 0.4, "k": None, "max_k": math.inf, "n": 12,
              "f": {"template": 0.0, "example": 0.05, "residual": 0.05, "seed": 1e-4, "seed_by_group": 0.0}}


def _side(side):
    """The planner's view of one order's true ratio: (forgetting, gain) components, independent, equal variances."""
    c, r, gain = side["f"], side["ratio"], side["gain"]
    seed = c["seed"] + c["seed_by_group"] / side["groups"]  # the task mean's training randomness
    values = {"template": c["template"], "example": c["example"], "residual": c["residual"], "seed": seed}
    scale = (1 + r * r) / gain ** 2  # the linearised ratio (f - R g) / gain
    clustered = side["k"] is not None
    design = pw.Components(*(values[k] * scale for k in ("template", "example", "residual", "seed")), 0.0, 3,
                           side["groups"], side["n"], side["k"] or side["n"], side["max_k"], clustered)
    return pw.RatioSide(r * gain, gain, {k: v * np.eye(2) for k, v in values.items()}, design)


def _ratio_side(rng, side, reps, seeds, n, c):
    k = _templates(c.design, n) if side["k"] is not None else n
    f, groups, clusters = draw(rng, reps, seeds, n, k, side["ratio"] * side["gain"], truth=side["f"], G=side["groups"])
    g, _, _ = draw(rng, reps, seeds, n, k, side["gain"], truth=side["f"], G=side["groups"])
    return inference.ratio_parts(f, g, *inference.codes(groups, clusters if side["k"] is not None else None))


def _asymmetry_rejections(rng, first, second, n1, n2, seeds, reps):
    one = _ratio_side(rng, SAFETY, reps, seeds, n1, first)
    two = _ratio_side(rng, CAPABILITY, reps, seeds, n2, second)
    low, high = inference.mover(one, two)  # Fieller per ratio, MOVER for the difference: the product's interval
    return float(np.mean((low > 0) | (high < 0)))


def test_asymmetry_study_sized_by_the_planner_reaches_its_power():
    first, second = _side(SAFETY), _side(CAPABILITY)
    delta, seeds, n1 = SAFETY["ratio"] - CAPABILITY["ratio"], 3, 40
    n2 = pw.smallest(lambda k: pw.asymmetry_power(first, second, delta, n1, k, seeds), 0.8, 2, 5000)
    claimed = pw.asymmetry_power(first, second, delta, n1, n2, seeds)
    simulated = _asymmetry_rejections(np.random.default_rng(5), first, second, n1, n2, seeds, 400)
    assert abs(simulated - claimed) <= 0.05, (n2, claimed, simulated)
    small = pw.asymmetry_power(first, second, delta, PILOT_N, CAPABILITY["n"], seeds)  # the quick design
    missed = _asymmetry_rejections(np.random.default_rng(6), first, second, PILOT_N, CAPABILITY["n"], seeds, 400)
    assert small < 0.4 and missed < 0.5 and abs(missed - small) <= 0.05, (small, missed)
