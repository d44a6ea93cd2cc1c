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


def _newton(cdf, pdf, p: float, start: float) -> float:
    """The x >= 0 with ``cdf(x) = p`` (p >= 0.5): Newton steps from ``start``, kept inside a bisection bracket, so a
    few cdf evaluations reach 1e-12 where bisection alone needs about forty."""
    low, high = 0.0, max(start, 1.0)
    while cdf(high) < p:
        low, high = high, high * 2.0
    x = min(max(start, low), high)
    for _ in range(100):
        f = cdf(x) - p
        if f < 0:
            low = x
        else:
            high = x
        density = pdf(x)
        step = f / density if density > 0 else math.inf
        new = x - step
        if not low < new < high:
            new = 0.5 * (low + high)
        if abs(new - x) <= 1e-12 * max(1.0, abs(x)) or high - low <= 1e-12 * max(1.0, abs(x)):
            return new
        x = new
    return x


def _t_pdf(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


@lru_cache(maxsize=4096)
def t_ppf(p: float, df: float) -> float:
    if p == 0.5:
        return 0.0
    if df == math.inf:
        return normal_ppf(p)
    upper = _newton(lambda x: t_cdf(x, df), lambda x: _t_pdf(x, df), max(p, 1 - p), normal_ppf(max(p, 1 - p)))
    return upper if p > 0.5 else -upper


def normal_ppf(p: float) -> float:
    q = max(p, 1 - p)
    upper = _newton(normal_cdf, lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi), q,
                    math.sqrt(-2.0 * math.log(max(1.0 - q, 1e-300))) * 0.8)
    return upper if p > 0.5 else -upper
