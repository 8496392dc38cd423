"""Intervals, Holm, per-sample metric rebuilding and flags, checked against independent values
(binomial quantiles, inspect_evals' own metrics, hand-worked Holm) on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steerbench.results.flags import CellEstimate, find_flags, is_spike
from steerbench.results.scores import cell_scores
from steerbench.results.stats import holm, mean_interval, paired_change

# ---------------------------------------------------------------- intervals


def test_large_n_uses_the_normal_approximation() -> None:
    values = np.array([1.0] * 24 + [0.0] * 16)
    interval = mean_interval(values)
    se = math.sqrt(0.6 * 0.4 / 39)  # sd with ddof=1 over sqrt(n): sqrt(p(1-p) n/(n-1)) / sqrt(n)
    assert interval.method == "normal" and interval.n == 40
    assert (interval.low, interval.high) == pytest.approx((0.6 - 1.959964 * se, 0.6 + 1.959964 * se), abs=1e-6)


def test_small_n_uses_a_reproducible_paired_bootstrap_matching_binomial_quantiles() -> None:
    # resampled means of ten 0/1 values with mean 0.5 follow Binomial(10, 0.5) / 10, whose
    # 2.5% and 97.5% quantiles are 0.2 and 0.8
    values = np.array([0.0] * 5 + [1.0] * 5)
    first, second = mean_interval(values), mean_interval(values)
    assert first == second and first.method == "bootstrap"
    assert (first.low, first.high) == pytest.approx((0.2, 0.8))
    # two-sided: twice the share of resampled means at or below 0, P(Binomial(10, 0.5) = 0) = 1/1024
    assert first.p_value == pytest.approx(2 / 1024, abs=0.001) and first.estimate == 0.5


def test_a_change_every_sample_agrees_on_is_exact() -> None:
    same = paired_change({"a": 1.0, "b": 0.0, "c": 1.0}, {"a": 1.0, "b": 0.0, "c": 1.0})
    assert (same.change.estimate, same.change.low, same.change.high, same.change.p_value) == (0.0, 0.0, 0.0, 1.0)
    shifted = paired_change({str(i): 0.0 for i in range(40)}, {str(i): 1.0 for i in range(40)})
    assert shifted.change.p_value == 0.0 and shifted.change.low == 1.0


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
        values.append({"prompt_level_strict": strict == total, "inst_level_strict": strict,
                       "prompt_level_loose": loose == total, "inst_level_loose": loose, "num_instructions": total})
    theirs = if_metric()(_sample_scores(values))
    ours = cell_scores([(i, {"ifeval": v}) for i, v in enumerate(values)],
                       ["prompt_strict_acc", "prompt_loose_acc", "inst_strict_acc", "inst_loose_acc", "final_acc"])
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
        values.append({"original_answer": first, "admits_mistake": admits,
                       "confidence": float(first == "C" and admits == "I"),
                       "apologize_rate": float(first == "C" and admits == "C"),
                       "truthfulness": float((first == "C") != (admits == "C"))})
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


def row(benchmark: str, m: str, accuracy: float | None, n: int = 100, status: str = "success",
        completed: int | None = None, stderr: float | None = None, **extra) -> dict:
    found = {"benchmark": benchmark, "subset": "", "multiplier": m, "category": "General", "n_samples": n,
             "status": status, "completed_samples": n if completed is None else completed, **extra}
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
        row("A", "-1.0", 0.5), row("A", "-0.5", None, status="error", completed=3),
        row("A", "0.0", 0.5, completed=90), row("A", "0.5", 0.5, n=50), row("A", "1.0", 0.5),
        row("X", "0.0", None, refusal_rate=12.0), row("X", "1.0", None, refusal_rate=20.0),
    ]
    found = {(f.kind, f.benchmark, f.multiplier) for f in find_flags(rows)}
    assert found == {
        ("failed", "A", "-0.5"), ("partial", "A", "0.0"), ("sample count", "A", "0.5"), ("scale", "X", None),
        ("missing", "X", "-1.0"), ("missing", "X", "-0.5"), ("missing", "X", "0.5"),  # inferred from the grid
    }
