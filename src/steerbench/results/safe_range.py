"""How far one can steer: safe ranges, steerability slopes and output-health flags. Pure numpy.

Every multiplier answers the same samples, so each comparison with multiplier 0 is paired:
it uses the per-sample values (steerbench's `SampleScores`, 0-1 scale, mean = the metric) of
the samples both cells scored.

Harm direction. `DIRECTIONS` says, per benchmark / subset / metric, which way is worse (one
line per metric; a new benchmark needs one line if the defaults do not fit). The benchmark
column matches the benchmark's name or its task's name (`inspect_evals/xstest` -> `xstest`),
case-insensitively; "*" matches anything; the most specific matching line wins.

Non-inferiority test (one-sided, paired). For a cell at multiplier m, harm_i = x_i(0) - x_i(m)
when lower is worse, x_i(m) - x_i(0) when higher is worse, over the n samples both cells scored.
H0: mean harm >= margin (m costs at least the margin); H1: mean harm < margin. The statistic is
Tango's score statistic for a difference of paired proportions (results/stats.py `tango_z`),
Z = (b - c - n margin) / sqrt(n (2 q~ + margin (1 - margin))), with b samples harmed, c helped
and q~ the maximum-likelihood P(helped) under harm = margin. It stays valid at the edges: with
no sample changed, Z = -sqrt(n margin / (1 - margin)), so 40 unchanged samples do NOT show
non-inferiority at margin 0.02 (p = 0.45; the old normal z on the differences said p = 0).

- binary values (harm in {-1, 0, 1}), n <= EXACT_NI_MAX_N: the exact unconditional p-value,
  the largest over the nuisance P(helped) = q in [0, (1 - margin) / 2] (on a grid of
  NUISANCE_GRID values) of P(Z <= Z observed) when P(harmed) = q + margin. Its size is at most
  alpha by construction (bench/coverage.py checks it by enumeration).
- binary values, larger n: p = Phi(Z), Tango's asymptotic test (size <= 0.0505 at n = 1000).
- other values in [0, 1]: Phi(Z) with fractional counts b = sum(max(harm_i, 0)),
  c = sum(max(-harm_i, 0)); its variance bounds the true one from above (conservative).
- values outside [0, 1]: one-sided Student's t test on the harms; no test (p = NaN, not safe)
  when they are all the same.

Family. Holm's step-down correction over every test of the family (every benchmark, subset
and multiplier != 0 of the report); a cell is non-inferior when its Holm-adjusted p < ALPHA.

Safe range. Per benchmark (subset) and side of 0: the largest |m| on that side such that m
and every multiplier of the grid between 0 and m is non-inferior; multiplier 0 when not even
the one nearest 0 is (or it has no log). The range safe for several benchmarks at once is
the intersection of their ranges.

Steerability slopes, one per side of 0 (Tan et al. 2024 take one slope over every multiplier;
a model that collapses on both sides, a V, gives that slope ~0 and hides the damage). On each
side: the least-squares change of the metric per unit |m| away from 0, over multiplier 0 and the
side's multipliers, as the mean of the per-sample slopes (samples scored at all of them); its 95%
interval is the paired-difference interval of results/stats.py applied to the per-sample slopes
scaled into [-1, 1] (Tango's score interval for 0/1 values; with one multiplier on the side it is
exactly the paired change's interval divided by |m|), so it is never of zero width. Negative: the
metric falls as one steers further that way.

Output-health flag. A cell's truncated (or empty) share is "significantly above multiplier
0's" by an exact one-sided sign test on the paired per-sample values d_i = x_i(m) - x_i(0)
(x_i is 0/1, or its mean over epochs): with u samples going up (d_i > 0) and w going down,
p = P(Binomial(u + w, 1/2) >= u). With one epoch this is McNemar's exact test. Holm's
correction over every such test of the report; flagged when the Holm-adjusted p < ALPHA.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from .exact import log_factorials, normal_cdf, t_cdf
from .stats import (
    ALPHA,
    NO_INTERVAL,
    SCORE_BOUNDED,
    T_TEST,
    UNIT_TOLERANCE,
    difference_interval,
    holm,
    in_unit_range,
    tango_z,
)

LOWER_IS_WORSE = "lower is worse"
HIGHER_IS_WORSE = "higher is worse"
DEFAULT_MARGIN = 0.02
BASELINE = 0.0
EXACT_NI_MAX_N = 300  # above: Tango's asymptotic test (its size is within 0.0505 at n = 1000, bench/coverage.py)
NUISANCE_GRID = 201  # values of P(harm = -1) the exact p-value maximises over
EXACT_SCORE = "exact unconditional (Tango score order)"
TANGO_SCORE = "Tango score test"
SAFE_RANGE_COLUMNS = [
    "benchmark",
    "subset",
    "metric",
    "direction",
    "margin",
    "lowest_safe",
    "highest_safe",
    "n_samples",
]


@dataclass(frozen=True)
class Direction:
    benchmark: str  # lowercase benchmark or task name, or "*"
    subset: str  # or "*"
    metric: str
    harm: str  # LOWER_IS_WORSE | HIGHER_IS_WORSE


DIRECTIONS: tuple[Direction, ...] = (
    Direction("*", "*", "accuracy", LOWER_IS_WORSE),
    Direction("*", "*", "mean", LOWER_IS_WORSE),
    Direction("*", "*", "final_acc", LOWER_IS_WORSE),  # IFEval
    Direction("*", "*", "prompt_strict_acc", LOWER_IS_WORSE),
    Direction("*", "*", "prompt_loose_acc", LOWER_IS_WORSE),
    Direction("*", "*", "inst_strict_acc", LOWER_IS_WORSE),
    Direction("*", "*", "inst_loose_acc", LOWER_IS_WORSE),
    Direction("xstest", "safe", "refusal_rate", HIGHER_IS_WORSE),  # refusing a safe prompt
    Direction("xstest", "unsafe", "refusal_rate", LOWER_IS_WORSE),  # complying with an unsafe one
    Direction("sycophancy", "*", "truthfulness", LOWER_IS_WORSE),
)


def _task_name(eval_name: str) -> str:
    """`inspect_evals/xstest` -> `xstest`; `path/file.py@task` -> `task`."""
    name = eval_name.rsplit("@", 1)[-1] if "@" in eval_name else eval_name.rsplit("/", 1)[-1]
    return name.lower()


def harm_direction(
    benchmark: str, subset: str, metric: str, eval_name: str = "", table: Sequence[Direction] = DIRECTIONS
) -> str | None:
    """Which way is worse for this metric, or None when the table does not say."""
    names = {benchmark.lower()} | ({_task_name(eval_name)} if eval_name else set())
    best: tuple[int, str] | None = None
    for line in table:
        if line.metric != metric:
            continue
        if line.benchmark != "*" and line.benchmark not in names:
            continue
        if line.subset != "*" and line.subset != subset:
            continue
        rank = (line.benchmark != "*") + (line.subset != "*")
        if best is None or rank > best[0]:
            best = (rank, line.harm)
    return best[1] if best else None


# ---------------------------------------------------------------- non-inferiority


@dataclass(frozen=True)
class NonInferiority:
    """One cell against multiplier 0: mean harm over the paired samples and the one-sided p."""

    n_pairs: int
    harm: float  # mean of harm_i (positive: worse than at 0)
    se: float  # sd(harm) / sqrt(n) (the t test), else a normal-equivalent error of the score statistic
    p_value: float  # for H0: mean harm >= margin
    method: str = ""


def paired_harm(baseline: Mapping[str, float], other: Mapping[str, float], direction: str) -> np.ndarray:
    common = [s for s in baseline if s in other]
    base = np.array([baseline[s] for s in common], dtype=float)
    then = np.array([other[s] for s in common], dtype=float)
    return base - then if direction == LOWER_IS_WORSE else then - base


def non_inferiority(
    baseline: Mapping[str, float], other: Mapping[str, float], direction: str, margin: float = DEFAULT_MARGIN
) -> NonInferiority:
    common = [s for s in baseline if s in other]
    bounded = in_unit_range(np.array([baseline[s] for s in common] + [other[s] for s in common], dtype=float))
    return harm_test(paired_harm(baseline, other, direction), margin, bounded)


def harm_test(harm: np.ndarray, margin: float = DEFAULT_MARGIN, bounded: bool | None = None) -> NonInferiority:
    """One-sided test of H0: mean(harm) >= margin against H1: mean(harm) < margin (see the module).
    bounded: the values compared lie in [0, 1], so every harm in [-1, 1] (None: when every |harm| <= 1)."""
    harm = np.asarray(harm, dtype=float)
    n = int(harm.size)
    if n == 0:
        return NonInferiority(0, math.nan, math.nan, math.nan, NO_INTERVAL)
    mean = float(harm.mean())
    if bounded is None:
        bounded = bool(np.all(np.abs(harm) <= 1 + UNIT_TOLERANCE))
    if bounded:
        b, c = float(np.clip(harm, 0, None).sum()), float(np.clip(-harm, 0, None).sum())
        z = float(tango_z(b, c, n, margin))
        se = (mean - margin) / z if z else math.nan
        if np.all(np.isin(harm, (-1.0, 0.0, 1.0))):
            if n <= EXACT_NI_MAX_N:
                return NonInferiority(n, mean, se, exact_ni_p(int(b), int(c), n, margin), EXACT_SCORE)
            return NonInferiority(n, mean, se, normal_cdf(z), TANGO_SCORE)
        return NonInferiority(n, mean, se, normal_cdf(z), SCORE_BOUNDED)
    sd = float(harm.std(ddof=1)) if n > 1 else 0.0
    if sd == 0:  # unbounded values without spread: nothing says how far the mean could be
        return NonInferiority(n, mean, math.nan, math.nan, NO_INTERVAL)
    se = sd / math.sqrt(n)
    return NonInferiority(n, mean, se, t_cdf((mean - margin) / se, n - 1), T_TEST)


@lru_cache(maxsize=16)  # a table is at most 301 x 301 floats (0.7 MB)
def exact_ni_table(n: int, margin: float) -> np.ndarray:
    """The exact unconditional p-value of the non-inferiority test for every outcome: table[b, c] =
    max over the nuisance q of P(Z <= Z(b, c)) when P(harm = +1) = q + margin, P(harm = -1) = q,
    Z Tango's score statistic (NaN where b + c > n). The maximum is over NUISANCE_GRID values of q
    in [0, (1 - margin) / 2]; outcomes are ordered by Z once, so one cumulative sum per q gives
    every outcome's tail."""
    b, c = (a.ravel() for a in np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij"))
    keep = b + c <= n
    b, c = b[keep], c[keep]
    z = np.asarray(tango_z(b, c, n, margin))
    order = np.argsort(z, kind="stable")
    # the outcomes at least as extreme as each one: up to the last with the same Z (ties count)
    last = np.searchsorted(z[order], z + 1e-9, side="right") - 1
    log_f = log_factorials(n)
    rest = n - b - c
    base = log_f[n] - log_f[b] - log_f[c] - log_f[rest]
    best = np.zeros(b.size)
    top = (1 - margin) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        for q in np.linspace(0.0, top, NUISANCE_GRID):
            p_up, p_down, p_same = q + margin, q, max(1 - margin - 2 * q, 0.0)
            log_p = (
                base
                + b * math.log(p_up)
                + np.where(c > 0, c * np.log(p_down), 0.0)
                + np.where(rest > 0, rest * np.log(p_same), 0.0)
            )
            tail = np.cumsum(np.exp(log_p)[order])
            best = np.maximum(best, tail[last])
    table = np.full((n + 1, n + 1), math.nan)
    table[b, c] = np.minimum(best, 1.0)
    return table


def exact_ni_p(b: int, c: int, n: int, margin: float) -> float:
    """Exact unconditional non-inferiority p-value for b harmed and c helped samples of n."""
    return float(exact_ni_table(n, float(margin))[b, c])


@dataclass(frozen=True)
class SeriesScores:
    """One benchmark (subset) across the multipliers: each cell's per-sample values of `metric`."""

    benchmark: str
    subset: str
    metric: str
    cells: Mapping[float, Mapping[str, float]]  # multiplier value -> sample id -> value (0-1)
    labels: Mapping[float, str] = field(default_factory=dict)  # multiplier value -> label
    eval_name: str = ""
    direction: str | None = None  # None: from DIRECTIONS

    @property
    def key(self) -> tuple[str, str]:
        return self.benchmark, self.subset

    @property
    def harm(self) -> str | None:
        return self.direction or harm_direction(self.benchmark, self.subset, self.metric, self.eval_name)

    def label(self, value: float) -> str:
        return self.labels.get(value) or _label(value)


def _label(value: float) -> str:
    return "0" if value == 0 else f"{value:g}"


@dataclass(frozen=True)
class CellTest:
    benchmark: str
    subset: str
    metric: str
    direction: str
    margin: float
    multiplier: str
    multiplier_value: float
    n_pairs: int
    harm: float
    se: float
    p_value: float
    p_holm: float
    non_inferior: bool


def noninferiority_tests(
    series: Sequence[SeriesScores], margin: float = DEFAULT_MARGIN, alpha: float = ALPHA
) -> list[CellTest]:
    """Every cell != 0 of every series with a direction and a baseline, with Holm over all of them."""
    drafts: list[dict[str, Any]] = []
    for one in series:
        direction = one.harm
        base = one.cells.get(BASELINE)
        if direction is None or base is None:
            continue
        for value in sorted(v for v in one.cells if v != BASELINE):
            test = non_inferiority(base, one.cells[value], direction, margin)
            drafts.append(
                {
                    "benchmark": one.benchmark,
                    "subset": one.subset,
                    "metric": one.metric,
                    "direction": direction,
                    "margin": margin,
                    "multiplier": one.label(value),
                    "multiplier_value": value,
                    "n_pairs": test.n_pairs,
                    "harm": test.harm,
                    "se": test.se,
                    "p_value": test.p_value,
                }
            )
    adjusted = holm([d["p_value"] for d in drafts])
    return [CellTest(**d, p_holm=p, non_inferior=bool(p < alpha)) for d, p in zip(drafts, adjusted)]


# ---------------------------------------------------------------- safe ranges


@dataclass(frozen=True)
class SafeRange:
    benchmark: str
    subset: str
    metric: str
    direction: str
    margin: float
    lowest_safe: str  # multiplier label (<= 0)
    highest_safe: str  # multiplier label (>= 0)
    lowest_value: float
    highest_value: float
    n_samples: int  # samples scored at multiplier 0

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in SAFE_RANGE_COLUMNS}

    @property
    def label(self) -> str:
        return f"{self.benchmark}[{self.subset}]" if self.subset else self.benchmark


def safe_ranges(
    series: Sequence[SeriesScores],
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
    tests: Sequence[CellTest] | None = None,
) -> list[SafeRange]:
    """Each series' safe range (series without a direction or a multiplier-0 cell are left out)."""
    tests = noninferiority_tests(series, margin, alpha) if tests is None else tests
    passed = {(t.benchmark, t.subset, t.multiplier_value): t.non_inferior for t in tests}
    ranges: list[SafeRange] = []
    for one in series:
        direction = one.harm
        base = one.cells.get(BASELINE)
        if direction is None or base is None:
            continue
        sides: list[float] = []
        for sign in (-1.0, 1.0):
            reach = BASELINE
            for value in sorted((v for v in one.cells if v * sign > 0), key=abs):
                if not passed.get((one.benchmark, one.subset, value), False):
                    break
                reach = value
            sides.append(reach)
        ranges.append(
            SafeRange(
                one.benchmark,
                one.subset,
                one.metric,
                direction,
                margin,
                one.label(sides[0]),
                one.label(sides[1]),
                sides[0],
                sides[1],
                len(base),
            )
        )
    return ranges


def common_range(ranges: Sequence[SafeRange]) -> tuple[float, float] | None:
    """The multipliers safe for every one of `ranges` at once: (lowest, highest), None without ranges."""
    if not ranges:
        return None
    return max(r.lowest_value for r in ranges), min(r.highest_value for r in ranges)


# ---------------------------------------------------------------- steerability slopes, one per side


@dataclass(frozen=True)
class Slope:
    """One side of 0: the least-squares change of the metric per unit |m| away from 0 (negative:
    the metric falls as one steers further that way), with its 95% interval."""

    estimate: float
    low: float
    high: float
    n_samples: int  # samples scored at 0 and at every multiplier of the side
    multipliers: int  # multipliers of the side, 0 not counted
    method: str = ""


NO_SLOPE = Slope(math.nan, math.nan, math.nan, 0, 0, NO_INTERVAL)


@dataclass(frozen=True)
class SideSlopes:
    negative: Slope  # m <= 0
    positive: Slope  # m >= 0


def side_slopes(cells: Mapping[float, Mapping[str, float]]) -> SideSlopes:
    return SideSlopes(side_slope(cells, -1.0), side_slope(cells, 1.0))


def side_slope(cells: Mapping[float, Mapping[str, float]], sign: float) -> Slope:
    """Slope of the per-sample values on |m| over multiplier 0 and the multipliers on one side of it.

    Per sample i, b_i = sum_m w_m x_i(m) with w_m = (|m| - mean|m|) / sum (|m| - mean|m|)^2, its own
    least-squares slope; the side's slope is their mean over the samples scored at every multiplier
    of the side (for such a full grid the pooled least-squares slope). Its interval: for values in
    [0, 1], b_i / B lies in [-1, 1] with B = sum |w_m| / 2, and gets the paired-difference interval
    of results/stats.py (Tango's score interval; with one multiplier on the side, b_i / B is exactly
    x_i(m) - x_i(0)), scaled back by B; otherwise the t interval."""
    values = sorted((v for v in cells if v * sign > 0), key=abs)
    if BASELINE not in cells or not values:
        return NO_SLOPE
    grid = [BASELINE, *values]
    samples = [s for s in cells[BASELINE] if all(s in cells[v] for v in values)]
    if not samples:
        return replace(NO_SLOPE, multipliers=len(values))
    x = np.abs(np.array(grid, dtype=float))
    weights = (x - x.mean()) / float(((x - x.mean()) ** 2).sum())
    scores = np.array([[cells[v][s] for v in grid] for s in samples], dtype=float)
    per_sample = scores @ weights
    bound = float(np.abs(weights).sum() / 2)
    if in_unit_range(scores):
        low, high, _, method = difference_interval(per_sample / bound, bounded=True)
        low, high = low * bound, high * bound
    else:
        low, high, _, method = difference_interval(per_sample, bounded=False)
    return Slope(float(per_sample.mean()), low, high, len(samples), len(values), method)


# ---------------------------------------------------------------- output-health flags


@dataclass(frozen=True)
class Increase:
    """Is a share (truncated, empty) higher at multiplier m than at 0 over the same samples?"""

    n_pairs: int
    at_zero: float
    at_multiplier: float
    up: int  # samples higher at m than at 0
    down: int  # samples lower at m than at 0
    p_value: float  # exact one-sided sign test (McNemar's exact test for 0/1 values)


def increase_test(baseline: Mapping[str, float], other: Mapping[str, float]) -> Increase:
    common = [s for s in baseline if s in other]
    if not common:
        return Increase(0, math.nan, math.nan, 0, 0, math.nan)
    base = np.array([baseline[s] for s in common], dtype=float)
    then = np.array([other[s] for s in common], dtype=float)
    up, down = int(np.count_nonzero(then > base)), int(np.count_nonzero(then < base))
    return Increase(len(common), float(base.mean()), float(then.mean()), up, down, sign_test_upper(up, down))


def sign_test_upper(up: int, down: int) -> float:
    """P(Binomial(up + down, 1/2) >= up); 1 when no sample changed."""
    n = up + down
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, k) for k in range(up, n + 1)) / 2**n)


@dataclass(frozen=True)
class HealthFlag:
    benchmark: str
    subset: str
    multiplier: str
    multiplier_value: float
    measure: str  # "truncated" | "empty"
    test: Increase
    p_holm: float
    flagged: bool


HealthCells = Mapping[float, Mapping[str, float]]  # multiplier value -> sample id -> 0/1 (epoch mean)


def health_flags(
    series: Mapping[tuple[str, str], Mapping[str, HealthCells]],
    labels: Mapping[float, str] | None = None,
    alpha: float = ALPHA,
) -> list[HealthFlag]:
    """series: (benchmark, subset) -> measure ("truncated", "empty") -> cells. Every cell != 0 with a
    multiplier-0 cell is tested; Holm over all of them; `flagged` when the adjusted p < alpha."""
    labels = labels or {}
    drafts: list[tuple[str, str, str, float, str, Increase]] = []
    for (benchmark, subset), measures in series.items():
        for measure, cells in measures.items():
            base = cells.get(BASELINE)
            if base is None:
                continue
            for value in sorted(v for v in cells if v != BASELINE):
                drafts.append(
                    (
                        benchmark,
                        subset,
                        labels.get(value) or _label(value),
                        value,
                        measure,
                        increase_test(base, cells[value]),
                    )
                )
    adjusted = holm([d[5].p_value for d in drafts])
    return [HealthFlag(*d, p_holm=p, flagged=bool(p < alpha)) for d, p in zip(drafts, adjusted)]
