"""Safe ranges, the non-inferiority tests behind them, Holm, slopes and health flags, on
hand-made per-sample data whose answers are worked out by hand (steerbench.results.safe_range)."""

from __future__ import annotations

import math

import pytest

from steerbench.results.safe_range import (
    HIGHER_IS_WORSE,
    LOWER_IS_WORSE,
    SAFE_RANGE_COLUMNS,
    SeriesScores,
    common_range,
    harm_direction,
    health_flags,
    non_inferiority,
    noninferiority_tests,
    normal_cdf,
    safe_ranges,
    sign_test_upper,
    steerability_slope,
)

N = 40
IDS = [str(i) for i in range(N)]


def cell(ones: set[int] | range, n: int = N) -> dict[str, float]:
    """A 0/1 cell: the samples in `ones` score 1, the others 0."""
    return {str(i): 1.0 if i in ones else 0.0 for i in range(n)}


ALL, NONE = range(N), set()


def without(k: int) -> dict[str, float]:
    """All samples right except the first k."""
    return cell(range(k, N))


def phi(z: float) -> float:  # an independent spelling of the standard normal cdf
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


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


def test_non_inferiority_by_hand() -> None:
    # one of 40 samples lost: mean harm 1/40, sd = sqrt(1/40), se = 1/40; z = (0.025 - 0.1) / 0.025 = -3
    test = non_inferiority(cell(ALL), without(1), LOWER_IS_WORSE, margin=0.1)
    assert (test.n_pairs, test.harm, test.se) == (40, pytest.approx(0.025), pytest.approx(0.025))
    assert test.p_value == pytest.approx(phi(-3.0), rel=1e-12)
    # higher is worse: the same samples gaining a refusal are the harm
    assert non_inferiority(cell(NONE), cell({0}), HIGHER_IS_WORSE, 0.1).p_value == pytest.approx(phi(-3.0))
    # every sample the same: exactly known
    assert non_inferiority(cell(ALL), cell(ALL), LOWER_IS_WORSE, 0.1).p_value == 0.0
    assert non_inferiority(cell(ALL), cell(NONE), LOWER_IS_WORSE, 0.1).p_value == 1.0
    # fewer than 2 pairs: no test
    assert math.isnan(non_inferiority({"a": 1.0}, {"a": 1.0, "b": 0.0}, LOWER_IS_WORSE).p_value)
    assert normal_cdf(-1.959963984540054) == pytest.approx(0.025)


# ---------------------------------------------------------------- ranges


def grid() -> list[SeriesScores]:
    return [
        # lose 0 / 1 / 20 samples at +0.5 / +1 / +2, 1 / 10 / 0 at -0.5 / -1 / -2
        SeriesScores("MMLU", "", "accuracy", {
            -2.0: without(0), -1.0: without(10), -0.5: without(1), 0.0: without(0),
            0.5: without(0), 1.0: without(1), 2.0: without(20)}),
        # 4 refusals at 0; +0.5 adds one, +1 adds four (harm 0.1 = the margin); refusing less is no harm
        SeriesScores("XSTest", "safe", "refusal_rate", {
            -2.0: cell(NONE), -1.0: cell(NONE), 0.0: cell(range(4)), 0.5: cell(range(5)), 1.0: cell(range(8))},
            labels={-2.0: "-2.0", -1.0: "-1.0", 0.0: "0.0", 0.5: "0.5", 1.0: "1.0"}),
        # refuses every unsafe prompt at 0 and above; half of them at -0.5, none at -1
        SeriesScores("XSTest", "unsafe", "refusal_rate", {
            -1.0: cell(NONE), -0.5: cell(range(20)), 0.0: cell(ALL), 0.5: cell(ALL), 1.0: cell(ALL)}),
        # no direction in the table: left out
        SeriesScores("Sycophancy", "", "apologize_rate", {0.0: cell(ALL), 1.0: cell(NONE)}),
        # no multiplier 0: left out
        SeriesScores("GSM8K", "", "accuracy", {1.0: cell(ALL), 2.0: cell(ALL)}),
    ]


def test_safe_ranges_by_hand_in_both_directions() -> None:
    tests = noninferiority_tests(grid(), margin=0.1)
    assert len(tests) == 6 + 4 + 4  # MMLU, XSTest[safe], XSTest[unsafe]; the others are not tested
    raw = {(t.benchmark, t.subset, t.multiplier_value): t.p_value for t in tests}
    assert raw[("MMLU", "", 1.0)] == pytest.approx(phi(-3.0))
    assert raw[("MMLU", "", -1.0)] > 0.5 and raw[("MMLU", "", 2.0)] > 0.5
    assert raw[("XSTest", "safe", 1.0)] == 0.5  # harm exactly the margin: z = 0
    # refusing 4 fewer safe prompts: harm -0.1, sd = sqrt(4 * 36 / (40 * 39)), z = -0.2 / (sd / sqrt(40))
    assert raw[("XSTest", "safe", -1.0)] == pytest.approx(phi(-0.2 / (math.sqrt(144 / 1560) / math.sqrt(40))))
    # Holm over all 14: four exact zeros, then 2 x 1.6e-5 (x10, x9), then 3 x Phi(-3) (x8, x7, x6)
    holm = {(t.benchmark, t.subset, t.multiplier_value): t.p_holm for t in tests}
    assert holm[("MMLU", "", 1.0)] == pytest.approx(8 * phi(-3.0))
    assert holm[("XSTest", "safe", 0.5)] == pytest.approx(8 * phi(-3.0))

    ranges = {r.label: r for r in safe_ranges(grid(), margin=0.1)}
    assert set(ranges) == {"MMLU", "XSTest[safe]", "XSTest[unsafe]"}
    # -2 is non-inferior but -1, between it and 0, is not: the range stops at -0.5
    assert ranges["MMLU"].row() == {"benchmark": "MMLU", "subset": "", "metric": "accuracy",
                                    "direction": "lower is worse", "margin": 0.1, "lowest_safe": "-0.5",
                                    "highest_safe": "1", "n_samples": 40}
    assert (ranges["XSTest[safe]"].lowest_safe, ranges["XSTest[safe]"].highest_safe) == ("-2.0", "0.5")
    assert ranges["XSTest[safe]"].direction == HIGHER_IS_WORSE
    assert (ranges["XSTest[unsafe]"].lowest_safe, ranges["XSTest[unsafe]"].highest_safe) == ("0", "1")
    assert list(ranges["MMLU"].row()) == SAFE_RANGE_COLUMNS
    assert common_range([ranges["MMLU"], ranges["XSTest[safe]"]]) == (-0.5, 0.5)
    assert common_range([]) is None


def test_a_wider_margin_widens_the_range() -> None:
    # margin 0.5: losing 10 of 40 (harm 0.25, se = sqrt(300 / 1560) / sqrt(40)) passes, losing 20 (harm 0.5) does not
    mmlu = grid()[:1]
    tests = {t.multiplier_value: t for t in noninferiority_tests(mmlu, margin=0.5)}
    assert tests[-1.0].p_value == pytest.approx(phi(-0.25 / (math.sqrt(300 / 1560) / math.sqrt(40))))
    assert tests[2.0].p_value == 0.5
    (found,) = safe_ranges(mmlu, margin=0.5)
    assert (found.lowest_safe, found.highest_safe, found.margin) == ("-2", "1", 0.5)


def shifted(z: float, margin: float = 0.02) -> dict[str, float]:
    """Values 0.5 - h_i with h_i = +s, -s, +s, ... (mean harm 0 against a baseline of 0.5), s
    chosen so that the test's z is exactly `z`: se = s / sqrt(39), z = -margin * sqrt(39) / s."""
    s = -margin * math.sqrt(39) / z
    return {str(i): 0.5 - (s if i % 2 == 0 else -s) for i in range(N)}


BORDERLINE = SeriesScores("ARC", "", "accuracy", {
    -0.5: shifted(-5.0), 0.0: {str(i): 0.5 for i in range(N)}, 0.5: shifted(-2.0), 1.0: shifted(-1.8)})
# every cell loses every sample: nothing is safe
HOPELESS = SeriesScores("HumanEval", "", "accuracy", {-1.0: cell(NONE), 0.0: cell(ALL), 1.0: cell(NONE)})


def test_holm_over_the_whole_family_narrows_a_range() -> None:
    alone = {t.multiplier_value: t for t in noninferiority_tests([BORDERLINE])}
    assert alone[0.5].p_value == pytest.approx(phi(-2.0)) and alone[1.0].p_value == pytest.approx(phi(-1.8))
    # Holm with 3 tests: Phi(-5) x 3, Phi(-2) x 2 = 0.0455, max(0.0455, Phi(-1.8) x 1) = 0.0455
    assert alone[0.5].p_holm == pytest.approx(2 * phi(-2.0)) and alone[1.0].p_holm == pytest.approx(2 * phi(-2.0))
    (found,) = safe_ranges([BORDERLINE])
    assert (found.lowest_safe, found.highest_safe) == ("-0.5", "1")
    # with two more (failing, p = 1) tests in the family: Phi(-2) x 4 = 0.091 > 0.05, though its own p is 0.023
    family = {(t.benchmark, t.multiplier_value): t for t in noninferiority_tests([BORDERLINE, HOPELESS])}
    assert family[("ARC", 0.5)].p_holm == pytest.approx(4 * phi(-2.0)) and not family[("ARC", 0.5)].non_inferior
    ranges = {r.benchmark: r for r in safe_ranges([BORDERLINE, HOPELESS])}
    assert (ranges["ARC"].lowest_safe, ranges["ARC"].highest_safe) == ("-0.5", "0")


def test_nothing_safe_gives_zero_on_both_sides() -> None:
    (found,) = safe_ranges([HOPELESS], margin=0.02)
    assert (found.lowest_safe, found.highest_safe, found.lowest_value, found.highest_value) == ("0", "0", 0.0, 0.0)
    # a side without any multiplier is 0 as well; a missing cell stops the range (it shows nothing)
    gap = SeriesScores("MBPP", "", "accuracy", {0.0: cell(ALL), 1.0: cell(ALL), 2.0: cell(ALL), -2.0: cell(ALL)})
    assert (safe_ranges([gap])[0].lowest_safe, safe_ranges([gap])[0].highest_safe) == ("-2", "2")
    positive_only = SeriesScores("MBPP", "", "accuracy", {0.0: cell(ALL), 1.0: cell(ALL)})
    assert (safe_ranges([positive_only])[0].lowest_safe, safe_ranges([positive_only])[0].highest_safe) == ("0", "1")


# ---------------------------------------------------------------- slope


def test_steerability_slope_by_hand() -> None:
    # per-sample slopes over m = -1, 0, 1: a 0, b -0.5, c -0.5; mean -1/3; sd 1/sqrt(12); se = sd / sqrt(3) = 1/6
    cells = {-1.0: {"a": 1.0, "b": 1.0, "c": 1.0}, 0.0: {"a": 1.0, "b": 1.0, "c": 0.0},
             1.0: {"a": 1.0, "b": 0.0, "c": 0.0}}
    slope = steerability_slope(cells)
    assert slope.estimate == pytest.approx(-1 / 3) and slope.se == pytest.approx(1 / 6)
    assert (slope.low, slope.high) == pytest.approx((-1 / 3 - 1.959964 / 6, -1 / 3 + 1.959964 / 6))
    assert (slope.n_samples, slope.n_values) == (3, 9)
    # a perfectly linear, shared effect has no spread
    exact = steerability_slope({m: {s: 0.5 + 0.1 * m for s in "abcd"} for m in (-1.0, 0.0, 2.0)})
    assert exact.estimate == pytest.approx(0.1) and exact.se == pytest.approx(0.0, abs=1e-12)
    # one multiplier, or one sample: no slope
    assert math.isnan(steerability_slope({0.0: {"a": 1.0, "b": 0.0}}).estimate)
    assert math.isnan(steerability_slope({0.0: {"a": 1.0}, 1.0: {"a": 0.0}}).estimate)


def test_slope_with_a_missing_value_is_the_pooled_least_squares_slope() -> None:
    import numpy as np

    cells = {-1.0: {"a": 1.0, "b": 1.0, "c": 1.0}, 0.0: {"a": 1.0, "b": 1.0}, 1.0: {"a": 0.0, "b": 0.0, "c": 1.0}}
    m = np.array([-1, -1, -1, 0, 0, 1, 1, 1], dtype=float)
    y = np.array([1, 1, 1, 1, 1, 0, 0, 1], dtype=float)
    assert steerability_slope(cells).estimate == pytest.approx(np.polyfit(m, y, 1)[0])


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
