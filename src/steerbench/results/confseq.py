"""Anytime-valid confidence sequences for the mean of bounded values drawn one at a time.

Used by adaptive studies (steerbench.results.adaptive) to stop a cell as soon as its answer is
clear, without inflating the error rate. Pure numpy.

Setting. A benchmark's samples are taken in a uniformly random order (a seeded permutation,
core.adaptive). For one cell the paired harm d_i = x_i(0) - x_i(m) (or its negative, per the
metric's harm direction) lies in [-1, 1]; it is mapped to y_i = (d_i + 1) / 2 in [0, 1].

Two estimands, one method:
- population=None (what adaptive studies use): the benchmark's samples are i.i.d. draws from a
  population of questions, and mu is that population's mean harm. This is the estimand of the
  report's paired tests (Tango, McNemar), so an adaptive study and a full sweep answer the same
  question; a uniformly random order of i.i.d. samples is again i.i.d., so the draws in the
  study's order are i.i.d. with mean mu. Here m_t(m) = m.
- population=N: mu is the mean of the N values themselves (sampling without replacement, the
  order the only randomness); m_t(m) below is the mean of the undrawn values. At t = N the
  interval is the exact mean.

Method: betting (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables by
betting", JRSS-B, sections 4 and 6: predictable plug-in bets, without-replacement means). For a
candidate mean m, after t - 1 draws with sum S the mean of the undrawn values is
m_t(m) = (N m - S) / (N - t + 1), which is E[y_t | past] when mu = m. Two capital processes

    K+_t(m) = prod_{i<=t} (1 + l+_i (y_i - m_i(m))),   l+_i = min(l_i, c / m_i(m))
    K-_t(m) = prod_{i<=t} (1 - l-_i (y_i - m_i(m))),   l-_i = min(l_i, c / (1 - m_i(m)))

bet that mu is above (K+) or below (K-) m, with c = 3/4 and the predictable plug-in size
l_i = sqrt(2 log(2 / alpha) / (s2_{i-1} i log(1 + i))), s2 a running variance (WSR eq. 26);
the bets only decide how fast the sequence shrinks, never its validity.

Why it is valid at every stopping time (proof sketch, WSR Thm 3 and Prop. 6). Each l_i is fixed
before y_i is seen and each factor is >= 1 - c > 0, so when mu = m, E[factor_i | past] = 1:
K+(mu) and K-(mu) are nonnegative martingales starting at 1. Ville's inequality gives
P(sup_t K+_t(mu) >= 2/alpha) <= alpha/2, and the same for K-. Hence with probability >= 1 - alpha,
simultaneously for ALL t, mu lies in [L_t, U_t] with L_t = inf{m : K+_t(m) < 2/alpha} and
U_t = sup{m : K-_t(m) < 2/alpha}: the guarantee holds for the running intersection and at any
data-dependent time, so looking after every batch and stopping early costs nothing. K+_t(m) is
non-increasing in m and K-_t(m) non-decreasing (each factor is), so the sets are intervals and
one-sided claims are exact tests: "mu < delta" is claimed when K-_s(delta) >= 2/alpha for some
s <= t (for mu > delta, K-(delta) is a supermartingale: the undrawn mean exceeds m_i(delta)).
Without replacement, candidates m that the draws make impossible are rejected outright, on
their side (m_i(m) < 0 by K+, > 1 by K-).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BET_CAP = 0.75  # c in WSR's truncation c / m: keeps every factor >= 1 - c
BISECTION_STEPS = 40
METHOD = "betting confidence sequence (Waudby-Smith & Ramdas 2023), without replacement"


def bet_sizes(y: np.ndarray, alpha: float) -> np.ndarray:
    """The predictable plug-in bet before each draw (WSR eq. 26): depends on earlier draws only."""
    t = np.arange(1, len(y) + 1, dtype=float)
    running_mean = (0.5 + np.cumsum(y)) / (t + 1)  # mu^_t after t draws
    squared = (y - running_mean) ** 2
    running_var = (0.25 + np.cumsum(squared)) / (t + 1)  # s2_t after t draws
    before = np.concatenate(([0.25], running_var[:-1]))  # s2_{t-1}: known before draw t
    return np.sqrt(2 * math.log(2 / alpha) / (before * t * np.log1p(t)))


def _undrawn_means(y: np.ndarray, population: int | None, m: float) -> np.ndarray:
    """m_t(m): the mean of the values not yet drawn before draw t, if the whole list's mean is m
    (population None: i.i.d. draws of mean m, so m itself)."""
    if population is None:
        return np.full(len(y), m)
    drawn = np.concatenate(([0.0], np.cumsum(y)[:-1]))
    left = population - np.arange(len(y), dtype=float)
    return (population * m - drawn) / left


def log_capital(
    y: np.ndarray, population: int | None, m: float, alpha: float, upper: bool, bets: np.ndarray | None = None
) -> np.ndarray:
    """log K+_t(m) (upper=True: betting that the mean is above m) or log K-_t(m), for t = 1..n.
    +inf from the first draw that makes mean m impossible."""
    if len(y) == 0:
        return np.zeros(0)
    bets = bet_sizes(y, alpha) if bets is None else bets
    means = _undrawn_means(y, population, m)
    # m too small (the undrawn values would have to average below 0) is evidence the mean is
    # above m: K+ rejects it; m too large is evidence it is below: K- rejects it
    impossible = means < 0 if upper else means > 1
    safe = np.clip(means, 1e-12, 1 - 1e-12)
    if upper:
        lam = np.minimum(bets, BET_CAP / safe)
        factors = 1 + lam * (y - safe)
    else:
        lam = np.minimum(bets, BET_CAP / (1 - safe))
        factors = 1 - lam * (y - safe)
    logs = np.log(np.maximum(factors, 1e-300))
    logs = np.where(impossible, np.inf, logs)
    return np.cumsum(logs)


@dataclass(frozen=True)
class Sequence:
    """The confidence sequence of one list of values in [0, 1] after its n draws."""

    n: int
    population: int | None  # None: i.i.d. draws
    alpha: float
    low: float  # L_n: the interval at the last draw (not intersected over time)
    high: float
    below_at: int | None  # first draw after which the sequence lay wholly below `threshold`
    above_at: int | None  # ... wholly above it
    threshold: float | None

    @property
    def width(self) -> float:
        return self.high - self.low


def _bound(y: np.ndarray, population: int | None, alpha: float, upper: bool, bets: np.ndarray) -> float:
    """L_n (upper=True: the lower end, from K+) or U_n, by bisection on the monotone capital."""
    level = math.log(2 / alpha)
    if len(y) == 0:
        return 0.0 if upper else 1.0

    def rejected(m: float) -> bool:
        return bool(log_capital(y, population, m, alpha, upper, bets)[-1] >= level)

    # upper=True: rejected for m below L; find the smallest m not rejected
    low, high = 0.0, 1.0
    if upper:
        if not rejected(0.0):
            return 0.0
        for _ in range(BISECTION_STEPS):
            mid = (low + high) / 2
            low, high = (mid, high) if rejected(mid) else (low, mid)
        return high
    if not rejected(1.0):
        return 1.0
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        low, high = (low, mid) if rejected(mid) else (mid, high)
    return low


def confidence_sequence(
    y: np.ndarray, population: int | None, alpha: float, threshold: float | None = None, bounds: bool = True
) -> Sequence:
    """The sequence of `y` (values in [0, 1], in draw order) from a list of `population` values
    (None: i.i.d. draws from a distribution, whose mean it covers).
    `threshold`: also say when (if ever) the sequence first lay wholly below or above it.
    bounds=False skips the interval's ends (NaN), which cost ~80 passes over the data."""
    y = np.asarray(y, dtype=float)
    if len(y) and (y.min() < -1e-12 or y.max() > 1 + 1e-12):
        raise ValueError("values must lie in [0, 1]")
    if population is not None and len(y) > population:
        raise ValueError(f"{len(y)} draws from a list of {population}")
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    y = np.clip(y, 0.0, 1.0)
    bets = bet_sizes(y, alpha)
    below_at = above_at = None
    if threshold is not None and len(y):
        level = math.log(2 / alpha)
        below = np.flatnonzero(log_capital(y, population, threshold, alpha, False, bets) >= level)
        above = np.flatnonzero(log_capital(y, population, threshold, alpha, True, bets) >= level)
        below_at = int(below[0]) + 1 if len(below) else None
        above_at = int(above[0]) + 1 if len(above) else None
    if population is not None and len(y) == population and len(y):  # nothing left to draw: the mean is known
        low = high = float(y.mean())
    elif bounds:
        low, high = _bound(y, population, alpha, True, bets), _bound(y, population, alpha, False, bets)
    else:
        low = high = math.nan
    return Sequence(len(y), population, alpha, low, high, below_at, above_at, threshold)


def to_unit(harm: np.ndarray) -> np.ndarray:
    """Paired differences in [-1, 1] -> [0, 1]."""
    return (np.asarray(harm, dtype=float) + 1) / 2


def from_unit(value: float) -> float:
    return 2 * value - 1
