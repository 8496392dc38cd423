"""Safe ranges, the non-inferiority tests behind them, Holm, slopes and health flags, on
hand-made per-sample data whose answers are worked out by hand (steerbench.results.safe_range)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steerbench.results.safe_range import (
    HIGHER_IS_WORSE,
    LOWER_IS_WORSE,
    SAFE_RANGE_COLUMNS,
    SeriesScores,
    common_range,
    exact_ni_p,
    exact_ni_table,
    harm_direction,
    harm_test,
    health_flags,
    non_inferiority,
    noninferiority_tests,
    safe_ranges,
    sign_test_upper,
    side_slopes,
)
from steerbench.results.stats import score_interval, tango_z

N = 40
IDS = [str(i) for i in range(N)]


def cell(ones: set[int] | range, n: int = N) -> dict[str, float]:
    """A 0/1 cell: the samples in `ones` score 1, the others 0."""
    return {str(i): 1.0 if i in ones else 0.0 for i in range(n)}


ALL, NONE = range(N), set()


def without(k: int) -> dict[str, float]:
    """All samples right except the first k."""
    return cell(range(k, N))


# ---------------------------------------------------------------- the direction table


def test_the_direction_table() -> None:
    assert harm_direction("MMLU", "", "accuracy") == LOWER_IS_WORSE
    assert harm_direction("IFEval", "", "final_acc") == LOWER_IS_WORSE
    assert harm_direction("XSTest", "safe", "refusal_rate") == HIGHER_IS_WORSE
    assert harm_direction("XSTest", "unsafe", "refusal_rate") == LOWER_IS_WORSE
    assert harm_direction("Sycophancy", "", "truthfulness") == LOWER_IS_WORSE
    # a benchmark named otherwise is matched by its task
    assert harm_direction("xs2", "safe", "refusal_rate", "inspect_evals/xstest") == HIGHER_IS_WORSE
    # not in the table: no direction, no test
    assert harm_direction("XSTest", "", "refusal_rate") is None
    assert harm_direction("Sycophancy", "", "apologize_rate") is None


# ---------------------------------------------------------------- one test


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def brute_exact_p(b: int, c: int, n: int, margin: float) -> float:
    """The exact unconditional p-value by its definition, outcome by outcome over a fine nuisance grid."""
    z_obs = tango_z(b, c, n, margin)
    extreme = [(i, j) for i in range(n + 1) for j in range(n + 1 - i) if tango_z(i, j, n, margin) <= z_obs + 1e-9]
    best = 0.0
    for q in np.linspace(0, (1 - margin) / 2, 2001):
        up, down, same = q + margin, q, max(1 - margin - 2 * q, 0.0)
        best = max(
            best, sum(math.comb(n, i) * math.comb(n - i, j) * up**i * down**j * same ** (n - i - j) for i, j in extreme)
        )
    return min(best, 1.0)


def test_non_inferiority_by_hand() -> None:
    # one of 40 samples lost, none gained, margin 0.1: the least favourable null has no gains, so
    # p = P(Binomial(40, 0.1) <= 1) = 0.9^40 + 4 x 0.9^39 = 0.080 (the old normal z said 0.0013)
    test = non_inferiority(cell(ALL), without(1), LOWER_IS_WORSE, margin=0.1)
    assert (test.n_pairs, test.harm) == (40, pytest.approx(0.025))
    assert test.p_value == pytest.approx(0.9**40 + 4 * 0.9**39, rel=1e-6) and test.method.startswith("exact")
    # higher is worse: the same samples gaining a refusal are the harm
    assert non_inferiority(cell(NONE), cell({0}), HIGHER_IS_WORSE, 0.1).p_value == pytest.approx(test.p_value)
    # harm exactly the margin (4 of 40): P(Binomial(40, 0.1) <= 4)
    assert non_inferiority(cell(ALL), without(4), LOWER_IS_WORSE, 0.1).p_value == pytest.approx(
        binomial_cdf(4, 40, 0.1)
    )
    # nothing changed: 40 unchanged samples do not show that the harm is below 2 points (0.98^40 = 0.45;
    # the old test said p = 0, "exactly known")
    assert non_inferiority(cell(ALL), cell(ALL), LOWER_IS_WORSE, 0.02).p_value == pytest.approx(0.98**40, rel=1e-6)
    assert non_inferiority(cell(ALL), cell(NONE), LOWER_IS_WORSE, 0.1).p_value == 1.0
    # outcomes with gains and losses, against the definition
    for b, c in [(0, 0), (2, 3), (0, 4), (6, 1)]:
        assert exact_ni_p(b, c, 40, 0.1) == pytest.approx(brute_exact_p(b, c, 40, 0.1), rel=1e-3, abs=1e-6), (b, c)


def test_non_inferiority_of_other_values_stays_honest_at_the_edge() -> None:
    # 39 samples unchanged, one gains 0.2 (a mean over 5 epochs): the t test would find p ~ 1e-7; the
    # score test with fractional counts does not take one sample for certainty
    harm = np.array([0.0] * 39 + [-0.2])
    test = harm_test(harm, 0.02)
    assert test.method == "score interval (bounded)" and test.p_value > 0.1
    # values outside [0, 1] without spread: no test; with spread: one-sided t (scipy.stats.t.cdf(-2.5, 3) = 0.04385)
    assert math.isnan(harm_test(np.full(10, 2.0), 0.02, bounded=False).p_value)
    harm = np.array([2.0, 3.0, 4.0, 5.0])
    margin = 3.5 + 2.5 * harm.std(ddof=1) / 2  # t = (mean - margin) / (sd / sqrt(4)) = -2.5
    assert harm_test(harm, margin, bounded=False).p_value == pytest.approx(0.04385332350403278, rel=1e-6)


@pytest.mark.parametrize("n", [20, 40])
@pytest.mark.parametrize("margin", [0.02, 0.1])
def test_the_exact_test_holds_its_size(n: int, margin: float) -> None:
    """Rejection probability at alpha = 0.05 on the null's boundary (harm = margin), by enumeration."""
    table = exact_ni_table(n, margin)
    reject = [(b, c) for b in range(n + 1) for c in range(n + 1 - b) if table[b, c] < 0.05]
    for q in np.linspace(0, (1 - margin) / 2, 41):
        up, down, same = q + margin, q, max(1 - margin - 2 * q, 0.0)
        size = sum(math.comb(n, b) * math.comb(n - b, c) * up**b * down**c * same ** (n - b - c) for b, c in reject)
        assert size <= 0.05 + 1e-9, (q, size)


# ---------------------------------------------------------------- ranges

M = 300  # samples: enough for a margin of 0.1 to be shown, so that ranges are more than 0


def lost(k: int, n: int = M) -> dict[str, float]:
    return cell(range(k, n), n)


def refusing(k: int, n: int = M) -> dict[str, float]:
    return cell(range(k), n)


def grid() -> list[SeriesScores]:
    return [
        # lose 0 / 3 / 60 samples at +0.5 / +1 / +2, 3 / 60 / 0 at -0.5 / -1 / -2
        SeriesScores(
            "MMLU",
            "",
            "accuracy",
            {-2.0: lost(0), -1.0: lost(60), -0.5: lost(3), 0.0: lost(0), 0.5: lost(0), 1.0: lost(3), 2.0: lost(60)},
        ),
        # 30 refusals at 0; +0.5 adds 3, +1 adds 30 (harm 0.1 = the margin); refusing less is no harm
        SeriesScores(
            "XSTest",
            "safe",
            "refusal_rate",
            {-2.0: refusing(0), -1.0: refusing(0), 0.0: refusing(30), 0.5: refusing(33), 1.0: refusing(60)},
            labels={-2.0: "-2.0", -1.0: "-1.0", 0.0: "0.0", 0.5: "0.5", 1.0: "1.0"},
        ),
        # refuses every unsafe prompt at 0 and above; half of them at -0.5, none at -1
        SeriesScores(
            "XSTest",
            "unsafe",
            "refusal_rate",
            {-1.0: refusing(0), -0.5: refusing(150), 0.0: refusing(M), 0.5: refusing(M), 1.0: refusing(M)},
        ),
        # no direction in the table: left out
        SeriesScores("Sycophancy", "", "apologize_rate", {0.0: cell(ALL), 1.0: cell(NONE)}),
        # no multiplier 0: left out
        SeriesScores("GSM8K", "", "accuracy", {1.0: cell(ALL), 2.0: cell(ALL)}),
    ]


def test_safe_ranges_by_hand_in_both_directions() -> None:
    tests = noninferiority_tests(grid(), margin=0.1)
    assert len(tests) == 6 + 4 + 4  # MMLU, XSTest[safe], XSTest[unsafe]; the others are not tested
    raw = {(t.benchmark, t.subset, t.multiplier_value): t.p_value for t in tests}
    # the exact p is at least its value at no gains, P(Binomial(300, 0.1) <= losses): 30 more refusals
    # (harm = the margin) cannot pass; 3 lost of 300 pass easily
    assert raw[("XSTest", "safe", 1.0)] >= binomial_cdf(30, M, 0.1) > 0.5
    assert binomial_cdf(3, M, 0.1) <= raw[("MMLU", "", 1.0)] < 1e-6
    assert raw[("MMLU", "", -1.0)] > 0.999 and raw[("XSTest", "unsafe", -0.5)] > 0.999
    assert max(p for p in raw.values() if p < 0.5) < 1e-6  # the rest pass even after Holm's x14

    ranges = {r.label: r for r in safe_ranges(grid(), margin=0.1)}
    assert set(ranges) == {"MMLU", "XSTest[safe]", "XSTest[unsafe]"}
    # -2 is non-inferior but -1, between it and 0, is not: the range stops at -0.5
    assert ranges["MMLU"].row() == {
        "benchmark": "MMLU",
        "subset": "",
        "metric": "accuracy",
        "direction": "lower is worse",
        "margin": 0.1,
        "lowest_safe": "-0.5",
        "highest_safe": "1",
        "n_samples": M,
    }
    assert (ranges["XSTest[safe]"].lowest_safe, ranges["XSTest[safe]"].highest_safe) == ("-2.0", "0.5")
    assert ranges["XSTest[safe]"].direction == HIGHER_IS_WORSE
    assert (ranges["XSTest[unsafe]"].lowest_safe, ranges["XSTest[unsafe]"].highest_safe) == ("0", "1")
    assert list(ranges["MMLU"].row()) == SAFE_RANGE_COLUMNS
    assert common_range([ranges["MMLU"], ranges["XSTest[safe]"]]) == (-0.5, 0.5)
    assert common_range([]) is None


def test_forty_samples_cannot_show_a_small_margin() -> None:
    # the same MMLU shape on 40 samples: even unchanged cells fail at margin 0.1 after Holm (p = 0.0196 x 6)
    small = SeriesScores(
        "MMLU", "", "accuracy", {-1.0: without(10), -0.5: without(1), 0.0: without(0), 0.5: without(0), 1.0: without(1)}
    )
    (found,) = safe_ranges([small], margin=0.1)
    assert (found.lowest_safe, found.highest_safe) == ("0", "0")
    # a wide margin (0.5) passes losing 10 of 40 (harm 0.25); P(Binomial(40, 0.5) <= 10) x Holm's 4
    (wide,) = safe_ranges([small], margin=0.5)
    assert (wide.lowest_safe, wide.highest_safe) == ("-1", "1")


# 19 and 20 of 300 lost, margin 0.1: p = 0.0179 and 0.0287, each passes alone at 0.05
BORDERLINE = SeriesScores("ARC", "", "accuracy", {-0.5: lost(5), 0.0: lost(0), 0.5: lost(19), 1.0: lost(20)})
# every cell loses every sample: nothing is safe
HOPELESS = SeriesScores("HumanEval", "", "accuracy", {-1.0: cell(NONE), 0.0: cell(ALL), 1.0: cell(NONE)})


def test_holm_over_the_whole_family_narrows_a_range() -> None:
    alone = {t.multiplier_value: t for t in noninferiority_tests([BORDERLINE], margin=0.1)}
    p19, p20 = alone[0.5].p_value, alone[1.0].p_value
    assert p19 == pytest.approx(0.0179, abs=1e-4) and p20 == pytest.approx(0.0287, abs=1e-4)
    assert p19 >= binomial_cdf(19, M, 0.1) and p20 >= binomial_cdf(20, M, 0.1)  # no gains: a lower bound
    assert 2 * p19 < 0.05 and p20 < 0.05 < 4 * p19
    # Holm with 3 tests: tiny x 3, p19 x 2, max(p19 x 2, p20 x 1)
    assert alone[0.5].p_holm == pytest.approx(2 * p19) and alone[1.0].p_holm == pytest.approx(max(2 * p19, p20))
    (found,) = safe_ranges([BORDERLINE], margin=0.1)
    assert (found.lowest_safe, found.highest_safe) == ("-0.5", "1")
    # with two more (failing, p = 1) tests in the family: p19 x 4 > 0.05, though its own p is 0.017
    family = {(t.benchmark, t.multiplier_value): t for t in noninferiority_tests([BORDERLINE, HOPELESS], margin=0.1)}
    assert family[("ARC", 0.5)].p_holm == pytest.approx(4 * p19) and not family[("ARC", 0.5)].non_inferior
    ranges = {r.benchmark: r for r in safe_ranges([BORDERLINE, HOPELESS], margin=0.1)}
    assert (ranges["ARC"].lowest_safe, ranges["ARC"].highest_safe) == ("-0.5", "0")


def test_nothing_safe_gives_zero_on_both_sides() -> None:
    (found,) = safe_ranges([HOPELESS], margin=0.02)
    assert (found.lowest_safe, found.highest_safe, found.lowest_value, found.highest_value) == ("0", "0", 0.0, 0.0)
    # a side without any multiplier is 0 as well; a missing cell stops the range (it shows nothing)
    gap = SeriesScores("MBPP", "", "accuracy", {0.0: lost(0), 1.0: lost(0), 2.0: lost(0), -2.0: lost(0)})
    assert (safe_ranges([gap])[0].lowest_safe, safe_ranges([gap])[0].highest_safe) == ("-2", "2")
    positive_only = SeriesScores("MBPP", "", "accuracy", {0.0: lost(0), 1.0: lost(0)})
    assert (safe_ranges([positive_only])[0].lowest_safe, safe_ranges([positive_only])[0].highest_safe) == ("0", "1")


# ---------------------------------------------------------------- slopes


def test_a_v_shaped_curve_has_two_clearly_negative_slopes() -> None:
    # SmolLM2 on HumanEval: 12 of 40 right at 0, none at -1 or +1. One line through the V is flat
    # (the report printed +0.000 [-0.000, +0.000]); one slope per side shows the collapse on both
    v_shape = {-1.0: cell(NONE), 0.0: cell(range(12)), 1.0: cell(NONE)}
    m = np.repeat([-1.0, 0.0, 1.0], N)
    y = np.concatenate([np.zeros(N), [1.0] * 12 + [0.0] * 28, np.zeros(N)])
    assert np.polyfit(m, y, 1)[0] == pytest.approx(0.0, abs=1e-12)
    slopes = side_slopes(v_shape)
    for side in (slopes.negative, slopes.positive):
        assert side.estimate == pytest.approx(-0.3) and side.high < -0.15 and side.n_samples == N
        # one multiplier on the side: exactly the paired change's interval (12 of 40 lost) over |m|
        assert (side.low, side.high) == pytest.approx(score_interval(0, 12, N))


def test_slopes_by_hand() -> None:
    # three multipliers on the positive side, |m| = 0, 0.5, 1: weights (-1, 0, 1), so each sample's slope is
    # x(1) - x(0): a 0, b -1, c -1, d 0; the mean -1/2 and the score interval of (0, 2 of 4 down)
    cells = {
        0.0: {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0},
        0.5: {"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0},
        1.0: {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0},
        -2.0: {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0},
    }
    slopes = side_slopes(cells)
    assert slopes.positive.estimate == pytest.approx(-0.5) and slopes.positive.multipliers == 2
    assert (slopes.positive.low, slopes.positive.high) == pytest.approx(score_interval(0, 2, 4))
    # the negative side: one multiplier at |m| = 2, d gains: +1/2 per unit |m|, interval halved
    assert slopes.negative.estimate == pytest.approx(0.25 / 2)
    assert (slopes.negative.low, slopes.negative.high) == pytest.approx(tuple(x / 2 for x in score_interval(1, 0, 4)))
    # a perfectly linear, shared effect still has an interval (it is only 4 samples)
    linear = side_slopes({m: dict.fromkeys("abcd", 0.5 + 0.1 * m) for m in (0.0, 1.0, 2.0)}).positive
    assert linear.estimate == pytest.approx(0.1) and linear.high - linear.low > 0.1
    # a side without multipliers, or without multiplier 0: no slope
    assert math.isnan(side_slopes({0.0: {"a": 1.0}, 1.0: {"a": 0.0}}).negative.estimate)
    assert math.isnan(side_slopes({1.0: {"a": 1.0}, 2.0: {"a": 0.0}}).positive.estimate)


def test_a_sample_missing_at_one_multiplier_is_left_out_of_its_side() -> None:
    cells = {0.0: {"a": 1.0, "b": 1.0, "c": 1.0}, 1.0: {"a": 0.0, "b": 0.0}, -1.0: {"a": 1.0, "b": 1.0, "c": 1.0}}
    slopes = side_slopes(cells)
    assert (slopes.positive.n_samples, slopes.positive.estimate) == (2, -1.0)
    assert (slopes.negative.n_samples, slopes.negative.estimate) == (3, 0.0)


# ---------------------------------------------------------------- health flags


def test_sign_test_by_hand() -> None:
    assert sign_test_upper(9, 0) == 1 / 512
    assert sign_test_upper(1, 1) == 3 / 4
    assert sign_test_upper(0, 0) == 1.0
    assert sign_test_upper(5, 0) == 1 / 32


def test_health_flags_fire_only_where_the_share_rises_significantly() -> None:
    truncated = {
        0.0: cell({0}),
        0.5: cell({0, 1, 2, 3}),  # 3 up, 0 down: p = 1/8
        1.0: cell(range(10)),  # 9 up: p = 1/512
        -1.0: cell({1}),  # 1 up, 1 down: p = 3/4
    }
    empty = {0.0: cell(NONE), 1.0: cell(NONE)}  # nothing changed: p = 1
    flags = health_flags({("GSM8K", ""): {"truncated": truncated, "empty": empty}}, labels={1.0: "1.0"})
    found = {(f.measure, f.multiplier): f for f in flags}
    assert set(found) == {("truncated", "0.5"), ("truncated", "1.0"), ("truncated", "-1"), ("empty", "1.0")}
    # Holm over the four: 1/512 x 4; 1/8 x 3; max(3/8, 3/4 x 2 -> 1); 1
    assert found[("truncated", "1.0")].p_holm == pytest.approx(4 / 512) and found[("truncated", "1.0")].flagged
    assert found[("truncated", "0.5")].p_holm == pytest.approx(3 / 8) and not found[("truncated", "0.5")].flagged
    assert not found[("truncated", "-1")].flagged and not found[("empty", "1.0")].flagged
    test = found[("truncated", "1.0")].test
    assert (test.n_pairs, test.at_zero, test.at_multiplier, test.up, test.down) == (40, 1 / 40, 10 / 40, 9, 0)
