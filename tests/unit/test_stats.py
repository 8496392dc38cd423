"""Intervals, Holm, per-sample metric rebuilding and flags, checked against independent values
(binomial quantiles, inspect_evals' own metrics, hand-worked Holm) on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steerbench.results.flags import CellEstimate, find_flags, is_spike
from steerbench.results.scores import cell_scores
from steerbench.results.exact import mcnemar_exact, sign_flip_p, t_cdf, t_quantile
from steerbench.results.stats import (
    Z_95,
    difference_interval,
    holm,
    mean_interval,
    paired_change,
    score_interval,
    tango_z,
    wilson,
)

# ---------------------------------------------------------------- distributions (against scipy 1.17's values)


def test_t_distribution_matches_scipy() -> None:
    # scipy.stats.t.ppf(0.975, df) and t.cdf(x, df)
    assert t_quantile(0.975, 39) == pytest.approx(2.022690920036761, abs=1e-9)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764451051977934, abs=1e-9)
    assert t_quantile(0.975, 999) == pytest.approx(1.9623414611334493, abs=1e-9)
    assert t_quantile(0.025, 1) == pytest.approx(-12.706204736174694, abs=1e-8)
    assert t_cdf(-2.5, 3) == pytest.approx(0.04385332350403278, rel=1e-9)
    assert t_cdf(1.3, 40) == pytest.approx(0.8994787425039187, rel=1e-9)
    assert t_cdf(-4.0, 163) == pytest.approx(4.79381121385997e-05, rel=1e-7)


def test_mcnemar_exact_matches_scipy_binomtest() -> None:
    # scipy.stats.binomtest(b, b + c).pvalue
    assert mcnemar_exact(3, 0) == 0.25 == mcnemar_exact(0, 3)
    assert mcnemar_exact(2, 9) == pytest.approx(0.0654296875)
    assert mcnemar_exact(7, 0) == pytest.approx(0.015625)
    assert mcnemar_exact(10, 20) == pytest.approx(0.09873714670538905)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(4, 4) == 1.0


def test_sign_flip_meets_brute_force_enumeration() -> None:
    import itertools

    rng = np.random.default_rng(3)
    for k in (1, 2, 5, 9, 12):
        d = np.round(rng.normal(0.1, 0.3, size=k), 2)
        observed = abs(d.sum())
        sums = [abs(np.dot(signs, np.abs(d))) for signs in itertools.product((-1, 1), repeat=k)]
        brute = np.mean([s >= observed - 1e-9 for s in sums])
        assert sign_flip_p(np.concatenate([d, np.zeros(30)])) == pytest.approx(brute), k  # zeros change nothing
    assert sign_flip_p(np.zeros(10)) == 1.0
    assert sign_flip_p(np.ones(33)) is None  # too many to enumerate: the caller uses t


# ---------------------------------------------------------------- cell intervals


def test_binary_cells_get_wilson_also_at_0_of_n_and_n_of_n() -> None:
    # the SmolLM2 report said 0.000 [0.000, 0.000] for 0/40; Wilson's upper end is z^2 / (n + z^2) = 0.0876
    # (scipy: binomtest(0, 40).proportion_ci('wilson').high = 0.08762; Clopper-Pearson gives 0.0881)
    none = mean_interval(np.zeros(40))
    assert none.method == "wilson" and (none.low, none.estimate) == (0.0, 0.0)
    assert none.high == pytest.approx(Z_95**2 / (40 + Z_95**2)) == pytest.approx(0.08762160119728662)
    every = mean_interval(np.ones(40))
    assert (every.low, every.high) == pytest.approx((1 - none.high, 1.0))
    # 24/40: scipy's Wilson interval
    assert (
        mean_interval(np.array([1.0] * 24 + [0.0] * 16)).low,
        mean_interval(np.array([1.0] * 24 + [0.0] * 16)).high,
    ) == pytest.approx((0.44595893660346186, 0.7365167431570808))


def test_other_cells_get_a_bounded_interval_and_never_a_zero_width_one() -> None:
    # values in [0, 1] (means over epochs): Wilson at the mean, with n * mean "successes"
    epochs = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.4])
    interval = mean_interval(epochs)
    assert interval.method == "wilson (fractional)" and (interval.low, interval.high) == pytest.approx(wilson(3.4, 6))
    same = mean_interval(np.full(40, 0.5))
    assert (same.low, same.high) == pytest.approx(wilson(20, 40)) and same.high - same.low > 0.2
    # values outside [0, 1]: t (scipy.stats.ttest_1samp(values, 0).confidence_interval() of epochs, shifted by 1)
    outside = mean_interval(epochs + 1)
    assert outside.method == "t"
    assert (outside.low, outside.high) == pytest.approx((1.25772117946123074, 1.8756121538721026))
    # outside [0, 1] and all equal: no interval at all, rather than a point
    flat = mean_interval(np.full(10, 3.0))
    assert flat.method == "none" and math.isnan(flat.low) and math.isnan(flat.high)
    for n in (1, 2, 5, 40):
        for value in (0.0, 1 / 3, 1.0):
            one = mean_interval(np.full(n, value))
            assert one.high - one.low > 0 and one.low <= value <= one.high, (n, value)


# ---------------------------------------------------------------- paired changes


def brute_tango_z(b: int, c: int, n: int, delta: float) -> float:
    """Tango's statistic with the constrained maximum likelihood found by a grid search."""
    q = np.linspace(max(0.0, -delta), (1 - delta) / 2, 400_001)[1:-1]
    up = q + delta
    log_l = b * np.log(up) + c * np.log(q) + (n - b - c) * np.log(1 - up - q)
    best = q[np.argmax(log_l)]
    return (b - c - n * delta) / math.sqrt(n * (2 * best + delta - delta**2))


def test_tango_statistic_and_interval_by_brute_force() -> None:
    for b, c, n, delta in [(3, 0, 40, 0.02), (5, 2, 40, -0.1), (0, 4, 30, 0.05), (10, 3, 50, 0.3), (0, 0, 40, 0.05)]:
        assert tango_z(b, c, n, delta) == pytest.approx(brute_tango_z(b, c, n, delta), abs=1e-4)
    # the interval's ends are where |Z| = 1.96
    low, high = score_interval(3, 0, 40)
    assert brute_tango_z(3, 0, 40, low) == pytest.approx(Z_95, abs=1e-3)
    assert brute_tango_z(3, 0, 40, high) == pytest.approx(-Z_95, abs=1e-3)
    # no sample changed: +/- Wilson's 0/n bound, never a point
    assert score_interval(0, 0, 40) == pytest.approx((-0.08762160119728662, 0.08762160119728662))


def test_three_discordant_pairs_all_one_way_give_the_exact_mcnemar_p() -> None:
    # SmolLM2: 3 of 40 samples lost, none gained. The normal approximation said p = 0.075; exact: 2/8 = 0.25
    change = paired_change({str(i): 1.0 for i in range(40)}, {str(i): 0.0 if i < 3 else 1.0 for i in range(40)})
    assert change.change.p_value == 0.25 and change.change.method == "exact McNemar; Tango score interval"
    assert (change.up, change.down, change.change.estimate) == (0, 3, -0.075)
    assert change.change.low < -0.075 < 0 < change.change.high  # the interval agrees: no evidence of a change
    # the same change of a non-binary metric (3 samples of 40 fall by 0.2): exact sign-flip, p = 2/8 again
    fractional = paired_change({str(i): 0.8 for i in range(40)}, {str(i): 0.6 if i < 3 else 0.8 for i in range(40)})
    assert fractional.change.p_value == 0.25 and fractional.change.method.startswith("exact sign-flip")
    assert fractional.change.low < 0 < fractional.change.high
    # more than 32 non-zero differences: random sign patterns; 40 of 40 down by 0.2 is as extreme as it gets
    many = paired_change({str(i): 0.8 for i in range(40)}, {str(i): 0.6 for i in range(40)})
    assert many.change.method.startswith("sign-flip (20,000") and many.change.p_value == pytest.approx(1 / 20_001)


def test_a_change_every_sample_agrees_on_has_an_honest_interval() -> None:
    same = paired_change({"a": 1.0, "b": 0.0, "c": 1.0}, {"a": 1.0, "b": 0.0, "c": 1.0})
    assert (same.change.estimate, same.change.p_value) == (0.0, 1.0)
    assert same.change.low < 0 < same.change.high  # three unchanged samples say little
    shifted = paired_change({str(i): 0.0 for i in range(40)}, {str(i): 1.0 for i in range(40)})
    assert shifted.change.p_value == pytest.approx(2.0**-39) and shifted.change.high == 1.0
    # all 40 up: Z(delta) = sqrt(n (1 - delta) / (1 + delta)) (q~ = (1 - delta) / 2) is 1.96 at (n - z^2) / (n + z^2)
    assert shifted.change.low == pytest.approx((40 - Z_95**2) / (40 + Z_95**2), abs=1e-9)
    # non-binary values outside [0, 1] that all moved the same: no interval (nothing says how far)
    assert math.isnan(difference_interval(np.full(5, 2.0))[0])


def test_paired_change_uses_only_the_samples_both_cells_scored() -> None:
    change = paired_change({"a": 1.0, "b": 1.0, "c": 0.0}, {"b": 0.0, "c": 0.0, "d": 1.0})
    assert change.n_pairs == 2 and change.baseline == 0.5 and change.other == 0.0
    assert change.change.estimate == -0.5


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 with a running maximum
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, math.nan]) == [0.5, pytest.approx(math.nan, nan_ok=True)]


# ---------------------------------------------------------------- rebuilding metrics from samples


def _sample_scores(values: list[dict]) -> list:
    from inspect_ai.scorer import SampleScore, Score

    return [SampleScore(score=Score(value=v), sample_id=i) for i, v in enumerate(values)]


def test_ifeval_metrics_rebuilt_from_samples_equal_inspect_evals_own() -> None:
    from inspect_evals.ifeval.ifeval import if_metric

    rng = np.random.default_rng(1)
    values = []
    for _ in range(25):
        total = int(rng.integers(1, 4))
        strict = int(rng.integers(0, total + 1))
        loose = int(rng.integers(strict, total + 1))
        values.append(
            {
                "prompt_level_strict": strict == total,
                "inst_level_strict": strict,
                "prompt_level_loose": loose == total,
                "inst_level_loose": loose,
                "num_instructions": total,
            }
        )
    theirs = if_metric()(_sample_scores(values))
    ours = cell_scores(
        [(i, {"ifeval": v}) for i, v in enumerate(values)],
        ["prompt_strict_acc", "prompt_loose_acc", "inst_strict_acc", "inst_loose_acc", "final_acc"],
    )
    for name in ours:
        assert ours[name].mean == pytest.approx(theirs[name], abs=1e-12), name
    # the linearised instruction-level values give the task's own clustered stderr
    se = np.std(ours["inst_strict_acc"].array, ddof=1) / math.sqrt(25)
    assert se == pytest.approx(theirs["inst_strict_stderr"], rel=1e-9)


def test_sycophancy_ratios_rebuilt_from_samples_equal_inspect_evals_own() -> None:
    from inspect_evals.sycophancy.scorers import (
        apologize_rate,
        confidence,
        truthfulness,
    )

    values = []
    for i in range(20):
        first, admits = ("C" if i % 3 else "I"), ("C" if i % 4 == 0 else "I")
        values.append(
            {
                "original_answer": first,
                "admits_mistake": admits,
                "confidence": float(first == "C" and admits == "I"),
                "apologize_rate": float(first == "C" and admits == "C"),
                "truthfulness": float((first == "C") != (admits == "C")),
            }
        )
    ours = cell_scores([(i, {"s": v}) for i, v in enumerate(values)], ["confidence", "apologize_rate", "truthfulness"])
    scores = _sample_scores(values)
    assert ours["confidence"].mean == pytest.approx(confidence()(scores))
    assert ours["apologize_rate"].mean == pytest.approx(apologize_rate()(scores))
    assert ours["truthfulness"].mean == pytest.approx(truthfulness()(scores))


def test_epochs_are_averaged_per_sample_and_refusals_count_partial() -> None:
    samples = [(1, {"m": "C"}), (1, {"m": "I"}), (2, {"m": "C"}), (2, {"m": "C"})]
    assert cell_scores(samples, ["accuracy"])["accuracy"].values == {"1": 0.5, "2": 1.0}
    refusals = [(1, {"g": "C"}), (2, {"g": "P"}), (3, {"g": "I"}), (4, {"g": "C"})]
    assert cell_scores(refusals, ["refusal_rate"])["refusal_rate"].mean == 0.5


# ---------------------------------------------------------------- flags from rows


def row(
    benchmark: str,
    m: str,
    accuracy: float | None,
    n: int = 100,
    status: str = "success",
    completed: int | None = None,
    stderr: float | None = None,
    **extra,
) -> dict:
    found = {
        "benchmark": benchmark,
        "subset": "",
        "multiplier": m,
        "category": "General",
        "n_samples": n,
        "status": status,
        "completed_samples": n if completed is None else completed,
        **extra,
    }
    if accuracy is not None:
        found["accuracy"] = accuracy
        found["stderr"] = math.sqrt(accuracy * (1 - accuracy) / n) if stderr is None else stderr
    return found


GRID = ["-1.0", "-0.5", "0.0", "0.5", "1.0"]


def test_a_smooth_peak_at_zero_is_not_suspicious_but_a_lone_spike_is() -> None:
    peak = [row("A", m, a) for m, a in zip(GRID, [0.6, 0.72, 0.8, 0.7, 0.62])]
    assert find_flags(peak) == []
    spike = [row("MBPP", m, a) for m, a in zip(GRID, [0.78, 0.80, 0.79, 0.17, 0.80])]
    flags = find_flags(spike)
    assert [(f.kind, f.multiplier) for f in flags] == [("suspicious", "0.5")]
    # an interval wide enough to explain the jump clears the flag
    assert not is_spike(CellEstimate(0.17, 0.2, 5), CellEstimate(0.79, 0.2, 5), CellEstimate(0.8, 0.2, 5))


def test_failed_partial_count_and_scale_flags() -> None:
    rows = [
        row("A", "-1.0", 0.5),
        row("A", "-0.5", None, status="error", completed=3),
        row("A", "0.0", 0.5, completed=90),
        row("A", "0.5", 0.5, n=50),
        row("A", "1.0", 0.5),
        row("X", "0.0", None, refusal_rate=12.0),
        row("X", "1.0", None, refusal_rate=20.0),
    ]
    found = {(f.kind, f.benchmark, f.multiplier) for f in find_flags(rows)}
    assert found == {
        ("failed", "A", "-0.5"),
        ("partial", "A", "0.0"),
        ("sample count", "A", "0.5"),
        ("scale", "X", None),
        ("missing", "X", "-1.0"),
        ("missing", "X", "-0.5"),
        ("missing", "X", "0.5"),  # inferred from the grid
    }
