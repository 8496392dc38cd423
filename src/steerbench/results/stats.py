"""Intervals for a cell's mean and for a paired change, and multiple-comparison control.

Pure numpy; the distribution functions are in results/exact.py.

Every method is chosen to stay honest at the edges a steered model reaches: 0/n and n/n cells,
a handful of samples that changed, few samples. bench/coverage.py measures their coverage and
error rates by simulation (table in bench/README.md).

Cell intervals (95%, `mean_interval`), by what the per-sample values are:

- binary (every value 0 or 1; accuracy, refusal rate with one epoch): Wilson's score interval.
  It stays inside [0, 1] and keeps ~95% coverage down to 0/n and n/n (0/40 gives [0, 0.088]):
  its exact coverage is >= 0.94 at every n and p of bench/coverage.py. Clopper-Pearson would
  cover >= 95% by construction but is wider (often ~98%), which costs power at benchmark sizes.
- other values in [0, 1] (a mean over epochs, IFEval's final_acc): Wilson's interval at the mean
  with n samples ("fractional" successes n * mean). A [0, 1] variable with mean mu has variance
  at most mu (1 - mu), a 0/1 variable's, so this is conservative; the t interval is not: with
  skewed per-sample rates (most samples at 0, a few high) it covered 86-91% (bench/coverage.py),
  and it collapses to a point when all values are equal.
- values outside [0, 1] (the linearised ratio metrics can leave it; a task's own "mean"): Student's
  t interval, mean +/- t(0.975, n - 1) sd / sqrt(n); when every value is the same, no interval
  (NaN, method "none"): nothing in the data says how far the mean could be.

Paired change from multiplier 0 (`paired_change`): every multiplier answers the same samples, so
the change is measured per sample, d_i = x_i(m) - x_i(0), over the samples both cells scored.

- binary: p-value by McNemar's exact test (two-sided binomial test of the b samples that went
  0 -> 1 against the c that went 1 -> 0, at 1/2: 3 of 3 one way gives p = 0.25, where the normal
  approximation said 0.075); interval by Tango's (1998) score interval for a difference of paired
  proportions, the values of Delta whose score statistic
  Z(Delta) = (b - c - n Delta) / sqrt(n (2 q~ + Delta (1 - Delta))) lies within +/-1.96
  (q~: the constrained maximum-likelihood P(1 -> 0)). With no discordant pair it is
  +/- 1.96^2 / (n + 1.96^2), Wilson's 0/n bound. Z(0) is McNemar's z, so interval and test agree
  except in a thin band (the exact p is a little larger than the z one; "significant" follows p).
- other values: p-value by the sign-flip (paired permutation) test: exact when at most 32
  differences are non-zero (zeros do not count, so it is exact however many samples agree), else
  from 20,000 random sign patterns (fixed seed; (1 + k) / (B + 1) keeps it a valid test).
  Interval, for values in [0, 1]: the same score interval with fractional counts
  b = sum(max(d_i, 0)), c = sum(max(-d_i, 0)); its variance, E|d| - Delta^2, bounds the true
  E[d^2] - Delta^2 from above, so it is conservative, and it never collapses to a point when
  few samples changed (a t interval does: one changed sample in 40 gives one ~0.01 wide). For
  values outside [0, 1]: Student's t interval (NaN without spread).

Across the grid: Holm's step-down procedure on the p-values of every (benchmark, subset,
multiplier != 0) change of the headline metric. It controls the family-wise error rate at ALPHA
without assuming the tests are independent (they are not: they share multiplier 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .exact import mcnemar_exact, sign_flip_p, t_quantile

ALPHA = 0.05
Z_95 = 1.959963984540054  # two-sided 95% normal quantile
UNIT_TOLERANCE = 1e-9  # values this far outside [0, 1] (rounding) still count as inside

# methods, as the report and data/scores.csv name them
WILSON = "wilson"
WILSON_FRACTIONAL = "wilson (fractional)"
T_INTERVAL = "t"
NO_INTERVAL = "none"
MCNEMAR_TANGO = "exact McNemar; Tango score interval"
SIGN_FLIP = "exact sign-flip"
SIGN_FLIP_RANDOM = "sign-flip (20,000 random patterns)"
SIGN_FLIP_PATTERNS = 20_000
SIGN_FLIP_SEED = 0
T_TEST = "t"  # the one-sided non-inferiority test of values outside [0, 1]
TANGO_INTERVAL = "Tango score interval"
SCORE_BOUNDED = "score interval (bounded)"


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval. `se`: the t interval's sd / sqrt(n), or, for the score
    intervals, the interval's half-width / 1.96 (a normal-equivalent error, for comparisons)."""

    estimate: float
    low: float
    high: float
    se: float
    n: int
    method: str
    p_value: float = math.nan  # two-sided, for "no change" (paired changes only)


EMPTY = Interval(math.nan, math.nan, math.nan, math.nan, 0, NO_INTERVAL, math.nan)


def is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def in_unit_range(values: np.ndarray) -> bool:
    return bool(np.all((values >= -UNIT_TOLERANCE) & (values <= 1 + UNIT_TOLERANCE)))


def wilson(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (successes may be fractional: a mean times n)."""
    if n <= 0:
        return math.nan, math.nan
    p = min(max(successes / n, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0/n and n/n one end is exactly 0 or 1 (not a rounding error away from it)
    return (0.0 if p == 0 else max(0.0, centre - half)), (1.0 if p == 1 else min(1.0, centre + half))


def _t_interval(values: np.ndarray) -> tuple[float, float, float]:
    n = values.size
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(n))
    half = t_quantile(0.975, n - 1) * se
    return mean - half, mean + half, se


def mean_interval(values: np.ndarray) -> Interval:
    """95% interval for the mean of one cell's per-sample values (method by the values: see above)."""
    values = np.asarray(values, dtype=float)
    n = int(values.size)
    if n == 0:
        return EMPTY
    mean = float(values.mean())
    if is_binary(values):
        low, high = wilson(float(values.sum()), n)
        return Interval(mean, low, high, (high - low) / (2 * Z_95), n, WILSON)
    if in_unit_range(values):
        low, high = wilson(mean * n, n)
        return Interval(mean, low, high, (high - low) / (2 * Z_95), n, WILSON_FRACTIONAL)
    if float(np.ptp(values)) == 0:  # every value the same: the data carry no spread
        return Interval(mean, math.nan, math.nan, math.nan, n, NO_INTERVAL)
    low, high, se = _t_interval(values)
    return Interval(mean, low, high, se, n, T_INTERVAL)


# ---------------------------------------------------------------- paired differences of proportions


def tango_z(b: float | np.ndarray, c: float | np.ndarray, n: int, delta: float) -> float | np.ndarray:
    """Tango's score statistic for H0: P(d = +1) - P(d = -1) = delta, from b differences of +1 and
    c of -1 among n pairs (b, c may be arrays, and fractional: see `score_interval`)."""
    b, c = np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    A = 2.0 * n
    B = -(b + c) + delta * (2 * n - b + c)
    C = -c * delta * (1 - delta)
    q = (-B + np.sqrt(np.maximum(B * B - 4 * A * C, 0.0))) / (2 * A)  # constrained MLE of P(d = -1)
    variance = np.maximum(2 * q + delta * (1 - delta), 0.0)
    numerator = b - c - n * delta
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(numerator == 0, 0.0, numerator / np.sqrt(n * variance))
    return float(z) if z.ndim == 0 else z


def _tango_z_scalar(b: float, c: float, n: int, delta: float) -> float:
    """tango_z for one outcome, in plain floats (the interval's bisection calls it ~100 times)."""
    numerator = b - c - n * delta
    if numerator == 0:
        return 0.0
    A = 2.0 * n
    B = -(b + c) + delta * (2 * n - b + c)
    C = -c * delta * (1 - delta)
    q = (-B + math.sqrt(max(B * B - 4 * A * C, 0.0))) / (2 * A)
    variance = max(2 * q + delta * (1 - delta), 0.0)
    if variance == 0:
        return math.copysign(math.inf, numerator)
    return numerator / math.sqrt(n * variance)


def score_interval(b: float, c: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Tango's score interval for P(d = +1) - P(d = -1): the deltas with |Z(delta)| <= z (Z falls as
    delta rises, so each end is found by bisection)."""
    if n <= 0:
        return math.nan, math.nan
    estimate = (b - c) / n
    edge = 1 - 1e-12

    def solve(target: float, low: float, high: float) -> float:
        # Z(low) >= target >= Z(high)
        for _ in range(60):  # 2 / 2^60: far below any digit the report shows
            middle = (low + high) / 2
            if _tango_z_scalar(b, c, n, middle) > target:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    lower = -1.0 if _tango_z_scalar(b, c, n, -edge) <= z else solve(z, -edge, estimate)
    upper = 1.0 if _tango_z_scalar(b, c, n, edge) >= -z else solve(-z, estimate, edge)
    return lower, upper


def difference_interval(differences: np.ndarray, bounded: bool | None = None) -> tuple[float, float, float, str]:
    """95% interval for the mean of paired differences: (low, high, se, method). Bounded
    differences (of two values in [0, 1], so in [-1, 1]; None: when every |d| <= 1) get Tango's
    score interval, with fractional counts when they are not all -1, 0 or 1; others the t
    interval (NaN when they are all the same)."""
    d = np.asarray(differences, dtype=float)
    n = int(d.size)
    if n == 0:
        return math.nan, math.nan, math.nan, NO_INTERVAL
    if bounded is None:
        bounded = bool(np.all(np.abs(d) <= 1 + UNIT_TOLERANCE))
    if bounded:
        low, high = score_interval(float(np.clip(d, 0, None).sum()), float(np.clip(-d, 0, None).sum()), n)
        ternary = bool(np.all(np.isin(d, (-1.0, 0.0, 1.0))))
        return low, high, (high - low) / (2 * Z_95), TANGO_INTERVAL if ternary else SCORE_BOUNDED
    if n < 2 or float(np.ptp(d)) == 0:
        return math.nan, math.nan, math.nan, NO_INTERVAL
    low, high, se = _t_interval(d)
    return low, high, se, T_INTERVAL


def no_change_p(differences: np.ndarray) -> tuple[float, str]:
    """Two-sided p-value for "no change" from paired differences, by the sign-flip test: exact when
    at most 32 differences are non-zero, else from SIGN_FLIP_PATTERNS random sign patterns (fixed
    seed), p = (1 + patterns at least as extreme) / (patterns + 1), which is still a valid test."""
    d = np.asarray(differences, dtype=float)
    exact = sign_flip_p(d)
    if exact is not None:
        return exact, SIGN_FLIP
    values = np.abs(d[d != 0])
    observed = abs(float(d.sum())) - 1e-9 * max(1.0, float(values.sum()))
    rng = np.random.default_rng(SIGN_FLIP_SEED)
    extreme = 0
    for start in range(0, SIGN_FLIP_PATTERNS, 1000):
        signs = rng.integers(0, 2, size=(min(1000, SIGN_FLIP_PATTERNS - start), values.size)) * 2 - 1
        extreme += int(np.count_nonzero(np.abs(signs @ values) >= observed))
    return (1 + extreme) / (SIGN_FLIP_PATTERNS + 1), SIGN_FLIP_RANDOM


@dataclass(frozen=True)
class PairedChange:
    """The change from the baseline cell to another cell, over the samples both scored."""

    n_pairs: int
    baseline: float  # mean of the baseline over the paired samples
    other: float  # mean of the other cell over the paired samples
    change: Interval  # mean of the per-sample differences, with its interval and p-value
    up: int = 0  # binary metrics: samples 0 at the baseline and 1 at the other cell
    down: int = 0  # ... and 1 -> 0


def paired_change(baseline: dict[str, float], other: dict[str, float]) -> PairedChange:
    """baseline/other: sample id -> that sample's score (already reduced over epochs)."""
    common = [sample for sample in baseline if sample in other]
    if not common:
        return PairedChange(0, math.nan, math.nan, EMPTY)
    base = np.array([baseline[s] for s in common], dtype=float)
    then = np.array([other[s] for s in common], dtype=float)
    d = then - base
    n = len(common)
    if is_binary(base) and is_binary(then):
        up, down = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
        low, high = score_interval(up, down, n)
        change = Interval(
            float(d.mean()), low, high, (high - low) / (2 * Z_95), n, MCNEMAR_TANGO, mcnemar_exact(up, down)
        )
        return PairedChange(n, float(base.mean()), float(then.mean()), change, up, down)
    low, high, se, interval_method = difference_interval(d, in_unit_range(base) and in_unit_range(then))
    p_value, test = no_change_p(d)
    change = Interval(float(d.mean()), low, high, se, n, f"{test}; {interval_method}", p_value)
    return PairedChange(n, float(base.mean()), float(then.mean()), change)


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
