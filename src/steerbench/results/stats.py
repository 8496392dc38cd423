"""Intervals for a mean and for a paired change, and multiple-comparison control. Pure numpy.

Every multiplier answers the same samples, so a change from multiplier 0 is measured per
sample: d_i = score_i(m) - score_i(0) over the samples both cells scored. This removes the
between-sample variance that two independent standard errors carry, so the interval on the
change is much tighter than one built from the two cells' stderrs.

Methods (documented in the README and the report):

- n >= NORMAL_MIN_N: normal approximation. mean +/- 1.96 * sd / sqrt(n) (sd with ddof=1);
  two-sided p-value from the normal distribution.
- n < NORMAL_MIN_N: paired bootstrap. BOOTSTRAP_RESAMPLES resamples of the n values with a
  fixed seed (so a report is reproducible); the 2.5th and 97.5th percentiles of the
  resampled means; p-value = 2 * min(share of resampled means <= 0, share >= 0), each share
  counted as (k + 1) / (B + 1).
- Across the grid: Holm's step-down procedure on the p-values of every (benchmark, subset,
  multiplier != 0) change of the headline metric. It controls the family-wise error rate at
  ALPHA without assuming the tests are independent (they are not: they share multiplier 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
Z_95 = 1.959963984540054  # two-sided 95% normal quantile
NORMAL_MIN_N = 30
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% interval. `se` is the normal standard error, or for the bootstrap
    the standard deviation of the resampled means."""

    estimate: float
    low: float
    high: float
    se: float
    n: int
    method: str  # "normal" | "bootstrap" | "none" (no values)
    p_value: float  # two-sided, for "the mean is 0"


EMPTY = Interval(math.nan, math.nan, math.nan, math.nan, 0, "none", math.nan)


def mean_interval(values: np.ndarray) -> Interval:
    """95% interval for the mean of `values` (normal approximation, or bootstrap when n is small)."""
    values = np.asarray(values, dtype=float)
    n = int(values.size)
    if n == 0:
        return EMPTY
    if n >= NORMAL_MIN_N:
        return _normal_interval(values)
    return _bootstrap_interval(values)


def _normal_interval(values: np.ndarray) -> Interval:
    n = values.size
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - Z_95 * se, mean + Z_95 * se, se, n, "normal", _normal_p_value(mean, se))


def _normal_p_value(mean: float, se: float) -> float:
    if se == 0:
        # every value is the same: the mean is exactly known
        return 1.0 if mean == 0 else 0.0
    return math.erfc(abs(mean) / se / math.sqrt(2))


def _bootstrap_interval(values: np.ndarray) -> Interval:
    n = values.size
    mean = float(values.mean())
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = values[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    below = (np.count_nonzero(means <= 0) + 1) / (BOOTSTRAP_RESAMPLES + 1)
    above = (np.count_nonzero(means >= 0) + 1) / (BOOTSTRAP_RESAMPLES + 1)
    p_value = float(min(1.0, 2 * min(below, above)))
    return Interval(mean, float(low), float(high), float(means.std(ddof=1)), n, "bootstrap", p_value)


@dataclass(frozen=True)
class PairedChange:
    """The change from the baseline cell to another cell, over the samples both scored."""

    n_pairs: int
    baseline: float  # mean of the baseline over the paired samples
    other: float  # mean of the other cell over the paired samples
    change: Interval  # mean of the per-sample differences, with its interval and p-value


def paired_change(baseline: dict[str, float], other: dict[str, float]) -> PairedChange:
    """baseline/other: sample id -> that sample's score (already reduced over epochs)."""
    common = [sample for sample in baseline if sample in other]
    base = np.array([baseline[s] for s in common], dtype=float)
    then = np.array([other[s] for s in common], dtype=float)
    if not common:
        return PairedChange(0, math.nan, math.nan, EMPTY)
    return PairedChange(len(common), float(base.mean()), float(then.mean()), mean_interval(then - base))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (NaN stays NaN and is not counted in the family)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def unpaired_half_width(first: Interval, second: Interval) -> float:
    """What the 95% half-width of the change would be if the two cells were treated as independent."""
    return Z_95 * math.sqrt(first.se**2 + second.se**2)
