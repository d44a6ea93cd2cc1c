"""Seeded simulations of the inference engine (``inference.py``) in the designs users run, vectorised over
replications; shared by the calibration tests and bench/bench_stats_calibration.py.

- :func:`difference_calibration`: a method minus a baseline on 0/1 scores of the same examples, over ``S`` seeds.
  An example's score is ``Bernoulli(sigmoid(a_j + c_t + mu_m + u_ms))``: ``a_j`` its difficulty (shared by every
  method and seed), ``c_t`` its template's shift, ``u_ms`` the training randomness of method ``m``'s seed ``s``.
- :func:`asymmetry_calibration`: the order-asymmetry difference of relative forgetting (forgetting / gain) between
  the first task of two orders, one a 0/1-scored task, the other scored in nats per token, each over ``S`` seeds.

Each returns the coverage of the truth, the share of intervals excluding 0 (the test's size when the truth is 0) and
the Monte Carlo standard error of the coverage.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from chainforget.metrics import inference as inf


def layout(sizes: Sequence[int], templates: Sequence[int] | None = None, unit_size: int = 1
           ) -> tuple[np.ndarray, np.ndarray]:
    """(group code, cluster code) per example for groups of ``sizes``, each group's units (``unit_size`` consecutive
    examples, e.g. BBQ's two questions of a context) spread evenly over ``templates[g]`` templates."""
    sizes = np.asarray(sizes)
    gcode = np.repeat(np.arange(sizes.size), sizes)
    if templates is None:
        return gcode, np.arange(gcode.size)
    local = np.concatenate([np.arange(n) // unit_size for n in sizes]) % np.repeat(np.asarray(templates), sizes)
    return gcode, np.repeat(np.cumsum([0, *templates[:-1]]), sizes) + local


def from_labels(groups: Sequence[str], clusters: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(group code, cluster code) of a real split's examples (e.g. BBQ's categories and templates)."""
    return inf.codes(groups, clusters)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logistic_normal_mean(mu: float, sd: float) -> float:
    """``E[sigmoid(mu + sd * Z)]``, Z standard normal (Gauss-Hermite, 80 nodes)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(weights * _sigmoid(mu + sd * nodes)) / math.sqrt(2 * math.pi))


def _summary(low: np.ndarray, high: np.ndarray, truth: float) -> dict:
    reps = low.size
    coverage = float(np.mean((low <= truth) & (truth <= high)))
    return {"coverage": coverage, "excludes_zero": float(np.mean((low > 0) | (high < 0))),
            "mc_se": math.sqrt(max(coverage * (1 - coverage), 0.05 * 0.95) / reps), "reps": reps,
            "mean_width": _finite_mean(high - low), "truth": truth}


def _finite_mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def difference_calibration(gcode: np.ndarray, ccode: np.ndarray, n_seeds: int, seed_sd: float, reps: int,
                           seed: int, effect: float = 0.0, template_sd: float = 0.5, base: float = 0.5,
                           chunk: int = 40) -> dict:
    """Coverage of the 95% interval of ``method - baseline`` (``inference.seed_parts``) over ``reps`` data sets.

    Logits: method ``base + effect``, baseline ``base``; difficulty N(0, 1), template shift N(0, template_sd^2),
    each (method, seed) N(0, seed_sd^2). The truth is the expected difference over examples, templates and training.
    """
    rng = np.random.default_rng(seed)
    n, n_c = gcode.size, int(ccode.max()) + 1
    scale = math.sqrt(1.0 + template_sd ** 2 + seed_sd ** 2)
    truth = logistic_normal_mean(base + effect, scale) - logistic_normal_mean(base, scale)
    lows, highs = [], []
    for start in range(0, reps, chunk):
        b = min(chunk, reps - start)
        latent = rng.normal(0.0, 1.0, (b, 1, 1, n)) + rng.normal(0.0, template_sd, (b, 1, 1, n_c))[..., ccode]
        shift = np.array([base + effect, base])[None, :, None, None] + rng.normal(0.0, seed_sd, (b, 2, n_seeds, 1))
        scores = (rng.random((b, 2, n_seeds, n)) < _sigmoid(latent + shift)).astype(float)
        value, parts = inf.seed_parts(scores[:, 0] - scores[:, 1], gcode, ccode)
        half = inf.half_width(parts)
        lows.append(value - half)
        highs.append(value + half)
    return _summary(np.concatenate(lows), np.concatenate(highs), truth)


def _three_stage(b: int, n_seeds: int, n: int, gain: float, forget: float, scale: str, seed_sd: float,
                 rng: np.random.Generator, base: float = 0.25, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(forgetting, gain) per example ``[b, S, n]`` of a task over S seeds scoring the same examples; each seed's
    true share lost is ``forget / gain + N(0, seed_sd^2)``.

    ``acc``: 0/1 scores (an example learnt in the stage stays right before it is forgotten; the examples a seed
    learns and forgets are its own draws); ``nats``: a per-token log-likelihood per example (difficulty
    N(-1.3, 0.5^2)), each stage adding noise of sd ``noise``, half of it shared by the seeds (the example's own).
    """
    share = forget / gain + rng.normal(0.0, seed_sd, (b, n_seeds, 1))
    if scale == "acc":
        x0 = rng.random((b, 1, n)) < base
        x1 = x0 | (rng.random((b, n_seeds, n)) < gain / (1.0 - base))
        lost = rng.random((b, n_seeds, n)) < np.clip(share * gain / (base + gain), 0.0, 1.0)
        return (x1 & lost).astype(float), (x1.astype(float) - x0)
    half = noise / math.sqrt(2.0)
    step1 = gain + rng.normal(0.0, half, (b, 1, n)) + rng.normal(0.0, half, (b, n_seeds, n))
    step2 = share * gain + rng.normal(0.0, half, (b, 1, n)) + rng.normal(0.0, half, (b, n_seeds, n))
    return step2, step1


def asymmetry_calibration(first: tuple, second: tuple, reps: int, seed: int, n_seeds: int = 1, seed_sd: float = 0.0,
                          first_layout: tuple | None = None, chunk: int = 200) -> dict:
    """Coverage of the order-asymmetry interval ``rf(first) - rf(second)`` (Fieller per ratio, MOVER for the
    difference: ``inference.ratio_parts``, ``fieller``, ``mover``).

    ``first``/``second`` = ``(n, gain, forget, scale)``; ``first_layout`` = (group code, cluster code) of the first
    task's examples (e.g. the quick preset's BBQ draw: 9 categories x 20, context pairs in ~7 templates), else one
    group of independent examples. ``open`` = share of intervals unbounded on some side (they count as covering:
    an unbounded interval says honestly that the data cannot bound the ratio).
    """
    rng = np.random.default_rng(seed)
    truth = first[2] / first[1] - second[2] / second[1]
    layouts = [first_layout or (np.zeros(first[0], dtype=np.int64), np.arange(first[0])),
               (np.zeros(second[0], dtype=np.int64), np.arange(second[0]))]
    lows, highs = [], []
    for start in range(0, reps, chunk):
        b = min(chunk, reps - start)
        sides = []
        for (n, gain, forget, scale), codes in zip((first, second), layouts):
            f, g = _three_stage(b, n_seeds, n, gain, forget, scale, seed_sd, rng)
            sides.append(inf.ratio_parts(f, g, *codes))
        low, high = inf.mover(sides[0], sides[1])
        undefined = (sides[0][1] <= 0) | (sides[1][1] <= 0)  # a gain <= 0: no ratio, reported missing
        lows.append(np.where(undefined, -np.inf, low))
        highs.append(np.where(undefined, np.inf, high))
    low, high = np.concatenate(lows), np.concatenate(highs)
    out = _summary(low, high, truth)
    out["open"] = float(np.mean(~np.isfinite(low) | ~np.isfinite(high)))
    out["misses"] = {"interval_below_truth": float(np.mean(high < truth)),
                     "interval_above_truth": float(np.mean(low > truth))}
    return out
