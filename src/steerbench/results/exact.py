"""The few distribution functions the statistics need, exact and in pure numpy / math (no scipy).

- the standard normal distribution function (math.erfc);
- Student's t for an integer number of degrees of freedom, by the closed-form finite series of
  Abramowitz & Stegun 26.7.3-4 (exact up to rounding), and its quantile by bisection;
- McNemar's exact test: a two-sided binomial test of b against b + c at 1/2;
- the exact two-sided sign-flip (paired permutation) test of a mean difference, by enumerating the
  2^k sign patterns of the k non-zero differences (meet in the middle: two halves of 2^(k/2) sums);
- log-factorials for trinomial probabilities.

tests/unit/test_stats.py checks these against values from scipy 1.x (scipy.stats.t, binomtest).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SIGN_FLIP_MAX_NONZERO = 32  # 2 x 2^16 half-sums: a few milliseconds


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` (a positive integer) degrees of freedom."""
    if df < 1:
        raise ValueError("t_cdf needs at least one degree of freedom")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    c2 = c * c
    if df % 2 == 1:  # A&S 26.7.3
        total, term = 0.0, c
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        inside = (2 / math.pi) * (theta + s * total) if df > 1 else 2 * theta / math.pi
    else:  # A&S 26.7.4
        total, term = 0.0, 1.0
        for k in range(1, df // 2 + 1):
            total += term
            term *= c2 * (2 * k - 1) / (2 * k)
        inside = s * total
    inside = min(max(inside, 0.0), 1.0)  # P(|T| <= |t|)
    return 0.5 + 0.5 * inside if t >= 0 else 0.5 - 0.5 * inside


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t (bisection on t_cdf, to 1e-12)."""
    if not 0 < p < 1:
        raise ValueError("t_quantile needs 0 < p < 1")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return (low + high) / 2


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: min(1, 2 P(Binomial(b + c, 1/2) <= min(b, c))); 1 when b = c = 0.
    (scipy.stats.binomtest(b, b + c).pvalue gives the same: the distribution is symmetric.)"""
    k = b + c
    if k == 0:
        return 1.0
    tail = sum(math.comb(k, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**k)


def sign_flip_p(differences: np.ndarray) -> float | None:
    """Exact two-sided sign-flip test of `differences` (H0: symmetric about 0): the share of the 2^k
    sign patterns of the k non-zero differences whose |sum| reaches the observed |sum|. Zeros do not
    change the sum under any pattern and are left out. None when k > SIGN_FLIP_MAX_NONZERO."""
    values = np.abs(np.asarray(differences, dtype=float))
    values = values[values > 0]
    k = int(values.size)
    if k == 0:
        return 1.0
    if k > SIGN_FLIP_MAX_NONZERO:
        return None
    observed = abs(float(np.sum(differences)))
    tolerance = 1e-9 * max(1.0, float(values.sum()))
    first, second = _half_sums(values[: k // 2]), np.sort(_half_sums(values[k // 2 :]))
    threshold = observed - tolerance
    # pairs with x + y >= threshold, and pairs with x + y <= -threshold
    upper = second.size - np.searchsorted(second, threshold - first, side="left")
    lower = np.searchsorted(second, -threshold - first, side="right")
    count = int(upper.sum() + lower.sum())
    if observed <= tolerance:  # every pattern reaches 0
        count = first.size * second.size
    return min(1.0, count / 2.0**k)


def _half_sums(values: np.ndarray) -> np.ndarray:
    sums = np.zeros(1)
    for value in values:
        sums = np.concatenate([sums + value, sums - value])
    return sums


@lru_cache(maxsize=64)
def log_factorials(n: int) -> np.ndarray:
    """log(k!) for k = 0..n."""
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))])


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = log_factorials(n)
    i = np.arange(0, k + 1)
    terms = logs[n] - logs[i] - logs[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    return float(min(1.0, np.exp(terms).sum()))


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval of a binomial proportion, by bisection on the
    binomial distribution function: what the simulations of error rates print and test."""
    tail = (1 - confidence) / 2

    def solve(target: float, k: int) -> float:  # the p at which P(X <= k) = target (decreasing in p)
        low, high = 0.0, 1.0
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if binomial_cdf(k, n, mid) > target else (low, mid)
        return (low + high) / 2

    lower = 0.0 if successes == 0 else solve(1 - tail, successes - 1)
    upper = 1.0 if successes >= n else solve(tail, successes)
    return lower, upper
