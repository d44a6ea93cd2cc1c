"""The few distribution functions the statistics need: normal, chi-square and Student t quantiles.

Written out (regularised incomplete gamma and beta functions, then bisection) so that the metrics room imports only
numpy and the standard library; tests check them against scipy. Accuracy is far beyond what a 95% interval needs.
"""

from __future__ import annotations

import math
from functools import lru_cache


def _gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) (series below a + 1, continued fraction above)."""
    if x <= 0:
        return 0.0
    log_pre = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        k = a
        for _ in range(1000):
            k += 1
            term *= x / k
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return min(1.0, total * math.exp(log_pre))
    b, c, d = x + 1 - a, 1e300, 1.0 / (x + 1 - a)  # Lentz's continued fraction for Q(a, x)
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return max(0.0, 1.0 - math.exp(log_pre) * h)


def _beta_cf(a: float, b: float, x: float) -> float:
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (1e-300 if abs(d) < 1e-300 else d)
    h = d
    for m in range(1, 1000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (1e-300 if abs(d) < 1e-300 else d)
            c = 1.0 + num / c
            c = 1e-300 if abs(c) < 1e-300 else c
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _beta_i(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1 - x) / b


def chi2_cdf(x: float, df: float) -> float:
    return _gamma_p(df / 2.0, x / 2.0)


def t_cdf(x: float, df: float) -> float:
    tail = 0.5 * _beta_i(df / 2.0, 0.5, df / (df + x * x))
    return 1.0 - tail if x > 0 else tail


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _invert(cdf, p: float, low: float, high: float) -> float:
    while cdf(high) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if cdf(mid) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (low + high)


@lru_cache(maxsize=256)
def chi2_ppf(p: float, df: float) -> float:
    return _invert(lambda x: chi2_cdf(x, df), p, 0.0, max(1.0, 4.0 * df))


@lru_cache(maxsize=256)
def t_ppf(p: float, df: float) -> float:
    if p == 0.5:
        return 0.0
    if df == math.inf:
        return normal_ppf(p)
    upper = _invert(lambda x: t_cdf(x, df), max(p, 1 - p), 0.0, 10.0)
    return upper if p > 0.5 else -upper


def normal_ppf(p: float) -> float:
    upper = _invert(normal_cdf, max(p, 1 - p), 0.0, 10.0)
    return upper if p > 0.5 else -upper
