"""Adaptive studies, the pure parts: the betting confidence sequence (results.confseq) on known
sequences and by simulation, and the batch planning (core.adaptive) that makes a run resumable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steerbench.core.adaptive import (
    HARMFUL,
    NON_INFERIOR,
    OPEN,
    PRECISE,
    AdaptiveSettings,
    BatchRequest,
    CellView,
    batch_ends,
    beyond_first_harmful,
    effective_states,
    next_batches,
    next_end,
    sample_order,
)
from steerbench.results.confseq import confidence_sequence, from_unit, log_capital, to_unit
from steerbench.results.exact import clopper_pearson

MARGIN = 0.02
THRESHOLD = (MARGIN + 1) / 2  # the margin on the [0, 1] scale the sequence works on


# ---------------------------------------------------------------- the confidence sequence, known sequences


def test_no_change_is_non_inferior_and_never_harmful() -> None:
    """Every paired difference 0 (harm 0 < margin): the sequence leaves the margin from below, and
    only after enough samples that a 0.01 gap is clear at alpha 0.05/84."""
    y = to_unit(np.zeros(1000))
    seq = confidence_sequence(y[:600], 1000, 0.05 / 84, threshold=THRESHOLD)
    assert seq.above_at is None
    assert seq.below_at is not None and 100 < seq.below_at < 600
    assert from_unit(seq.low) < 0 < MARGIN < from_unit(seq.high) or from_unit(seq.high) < MARGIN


def test_every_answer_lost_is_harmful_within_a_few_samples() -> None:
    """Every difference +1 (the steered model loses every answer): harmful after a handful."""
    seq = confidence_sequence(to_unit(np.ones(50)), 14042, 0.05 / 84, threshold=THRESHOLD)
    assert seq.below_at is None
    assert seq.above_at is not None and seq.above_at <= 20
    assert from_unit(seq.low) > MARGIN


def test_interval_shrinks_and_contains_the_mean() -> None:
    rng = np.random.default_rng(1)
    population = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.85, 0.10], size=2000)
    truth = population.mean()
    widths = []
    for n in (50, 200, 800, 1600):
        seq = confidence_sequence(to_unit(population[:n]), 2000, 0.05)
        assert from_unit(seq.low) <= truth <= from_unit(seq.high)
        widths.append(seq.width)
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 3


def test_exhausted_list_gives_its_exact_mean() -> None:
    values = to_unit(np.array([1.0, 0.0, 0.0, -1.0, 1.0]))
    seq = confidence_sequence(values, 5, 0.05)
    assert seq.low == seq.high == pytest.approx(values.mean())


def test_capital_is_monotone_in_the_candidate_mean() -> None:
    """K+(m) falls and K-(m) rises with m: the rejected candidates form intervals, and the
    one-sided claims are tests (the proof in results/confseq.py relies on it)."""
    y = to_unit(np.random.default_rng(2).choice([-1.0, 0.0, 1.0], size=300))
    grid = np.linspace(0.05, 0.95, 37)
    up = [log_capital(y, 1000, m, 0.05, True)[-1] for m in grid]
    down = [log_capital(y, 1000, m, 0.05, False)[-1] for m in grid]
    assert all(a >= b - 1e-9 for a, b in zip(up, up[1:]))
    assert all(a <= b + 1e-9 for a, b in zip(down, down[1:]))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confidence_sequence(np.array([1.5]), 10, 0.05)
    with pytest.raises(ValueError, match="draws from a list"):
        confidence_sequence(np.zeros(11), 10, 0.05)
    with pytest.raises(ValueError, match="alpha"):
        confidence_sequence(np.zeros(3), 10, 0.0)


# ---------------------------------------------------------------- error control, by simulation


def draws_at_margin(n: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """i.i.d. paired harms in {-1, 0, 1} whose mean is exactly `margin` (the hardest case), with a
    share of changed answers drawn per cell."""
    helped = rng.uniform(0.0, 0.1)
    return rng.choice([-1.0, 0.0, 1.0], p=[helped, 1 - 2 * helped - margin, helped + margin], size=n)


def wrong_calls(harms: np.ndarray, alpha: float, looks: list[int], population: int | None = None) -> bool:
    """Whether a cell whose true harm is exactly the margin is ever called non-inferior or harmful
    (both calls are wrong there), checked after every sample up to the last look (a superset of
    the batch ends, so the count is conservative)."""
    seq = confidence_sequence(to_unit(harms[: looks[-1]]), population, alpha, threshold=THRESHOLD, bounds=False)
    return seq.below_at is not None or seq.above_at is not None


def test_family_error_with_bonferroni_over_cells_stays_below_alpha() -> None:
    """400 simulated studies of 10 cells, every true harm exactly at the margin, each cell looked at
    after every sample up to 1,000: the family-wise rate of any wrong call is at most 0.05, with
    its 95% Clopper-Pearson upper bound too."""
    rng = np.random.default_rng(23)
    cells, studies, n = 10, 400, 1000
    alpha = AdaptiveSettings().cell_alpha(cells)
    failures = sum(
        any(wrong_calls(draws_at_margin(n, MARGIN, rng), alpha, [n]) for _ in range(cells)) for _ in range(studies)
    )
    _, upper = clopper_pearson(failures, studies)
    assert upper <= 0.05, (failures, studies, upper)


def test_one_cell_at_alpha_keeps_alpha_and_naive_peeking_does_not() -> None:
    """The simulation can fail: at alpha 0.2 a single cell's rate of wrong calls stays below 0.2,
    while calling at the first batch end where an ordinary fixed-n 80% interval excludes the
    margin, on the same data, is wrong far more often than 0.2."""
    rng = np.random.default_rng(7)
    runs, n, alpha = 400, 400, 0.2
    looks = [25 * 2**k for k in range(5)] + [n]
    betting = naive = 0
    for _ in range(runs):
        harms = draws_at_margin(n, MARGIN, rng)
        betting += wrong_calls(harms, alpha, looks)
        naive += any(
            abs(harms[:t].mean() - MARGIN) > 1.2816 * harms[:t].std(ddof=1) / math.sqrt(t)
            for t in looks
            if harms[:t].std() > 0
        )
    assert clopper_pearson(betting, runs)[1] <= alpha, betting
    assert naive / runs > alpha + 0.1, naive


def test_without_replacement_the_list_mean_is_covered() -> None:
    """population=N: a finite list's own mean, at alpha 0.2, with the list's mean exactly the margin."""
    rng = np.random.default_rng(5)
    n, runs = 300, 300
    wrong = 0
    for _ in range(runs):
        extra = round(MARGIN * n)
        worse = int(rng.integers(extra, n // 5))
        harms = np.zeros(n)
        harms[:worse], harms[worse : 2 * worse - extra] = 1.0, -1.0
        assert harms.mean() == pytest.approx(MARGIN)
        wrong += wrong_calls(rng.permutation(harms), 0.2, [n - 1], population=n)
    assert clopper_pearson(wrong, runs)[1] <= 0.2, wrong


def test_coverage_of_the_interval_at_a_random_stopping_time() -> None:
    """The interval covers the list's mean at any data-dependent time: here the first batch end
    where it is narrower than 0.3, in 300 permutations of a skewed list, at alpha 0.1."""
    rng = np.random.default_rng(3)
    base = rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.6, 0.3], size=600)
    truth = base.mean()
    misses = 0
    for _ in range(300):
        harms = rng.permutation(base)
        for t in batch_ends(25, 600):
            seq = confidence_sequence(to_unit(harms[:t]), 600, 0.1)
            if seq.width <= 0.3 or t == 600:
                misses += not (from_unit(seq.low) - 1e-9 <= truth <= from_unit(seq.high) + 1e-9)
                break
    assert clopper_pearson(misses, 300)[1] <= 0.1


# ---------------------------------------------------------------- planning


def test_order_is_a_function_of_ids_seed_and_benchmark() -> None:
    ids = list(range(1, 101))
    order = sample_order(ids, 0, "MMLU", "")
    assert sorted(order, key=int) == [str(i) for i in ids]
    assert sample_order(reversed(ids), 0, "MMLU", "") == order  # not of the dataset's order
    assert sample_order(ids, 1, "MMLU", "") != order
    assert sample_order(ids, 0, "GSM8K", "") != order
    assert order[:10] != [str(i) for i in range(1, 11)]


def test_batches_double_up_to_the_whole_benchmark() -> None:
    assert batch_ends(50, 430) == [50, 100, 200, 400, 430]
    assert batch_ends(50, 50) == [50]
    assert batch_ends(50, 30) == [30]
    assert next_end(0, 50, None) == 50 and next_end(100, 50, None) == 200
    assert next_end(400, 50, 430) == 430 and next_end(430, 50, 430) is None


def views(**cells: tuple[int, str]) -> list[CellView]:
    names = {"zero": 0.0, "minus": -1.0, "plus": 1.0, "far": 2.0}
    return [CellView(names[name], done, state) for name, (done, state) in cells.items()]


def test_first_round_runs_everything_to_the_first_batch() -> None:
    cells = views(zero=(0, OPEN), minus=(0, OPEN), plus=(0, OPEN))
    assert next_batches(cells, 50, None) == [
        BatchRequest(0.0, 0, 50),
        BatchRequest(-1.0, 0, 50),
        BatchRequest(1.0, 0, 50),
    ]


def test_decided_cells_stop_and_zero_follows_the_furthest_open_cell() -> None:
    cells = views(zero=(100, OPEN), minus=(100, NON_INFERIOR), plus=(100, OPEN))
    assert next_batches(cells, 50, 1000) == [BatchRequest(0.0, 100, 200), BatchRequest(1.0, 100, 200)]
    cells = views(zero=(100, OPEN), minus=(100, HARMFUL), plus=(100, PRECISE))
    assert next_batches(cells, 50, 1000) == []


def test_exhausted_benchmark_stops() -> None:
    cells = views(zero=(430, OPEN), minus=(430, OPEN))
    assert next_batches(cells, 50, 430) == []


def test_zero_catches_up_first_after_a_kill_between_batches() -> None:
    """A run killed after multiplier 1's batch [100, 200) but before multiplier 0's: the next
    round runs only multiplier 0's, so no cell is extended before it is judged."""
    cells = views(zero=(100, OPEN), minus=(100, OPEN), plus=(200, OPEN))
    assert next_batches(cells, 50, 1000) == [BatchRequest(0.0, 100, 200)]


def test_safe_range_goal_stops_cells_beyond_the_first_harmful_one() -> None:
    states = {-2.0: OPEN, -1.0: HARMFUL, 1.0: OPEN, 2.0: OPEN}
    assert beyond_first_harmful(states) == {-2.0}
    assert effective_states([CellView(m, 100, s) for m, s in states.items()], "curves")[-2.0] == OPEN
    cells = views(zero=(100, OPEN), minus=(100, HARMFUL), far=(100, OPEN), plus=(100, OPEN))
    cells[2] = CellView(-2.0, 100, OPEN)
    assert [r.multiplier for r in next_batches(cells, 50, 1000, "safe-range")] == [0.0, 1.0]
    assert [r.multiplier for r in next_batches(cells, 50, 1000, "curves")] == [0.0, -2.0, 1.0]


def test_clopper_pearson_matches_scipy() -> None:
    """Reference values from scipy.stats.binomtest(k, n).proportion_ci(method='exact')."""
    assert clopper_pearson(4, 1000) == pytest.approx((0.0010909, 0.0102097), abs=1e-6)
    assert clopper_pearson(0, 100) == pytest.approx((0.0, 0.0362167), abs=1e-6)
    assert clopper_pearson(50, 100) == pytest.approx((0.3983211, 0.6016789), abs=1e-6)


def test_a_decided_cell_shows_its_interval_cut_at_the_margin() -> None:
    """Once called harmful the cell's interval stays above the margin, even where today's alone
    reaches back below it (the capital fell after the call)."""
    from steerbench.results.adaptive import decided_interval

    assert decided_interval(HARMFUL, -0.001, 0.42, MARGIN) == (MARGIN, 0.42)
    assert decided_interval(NON_INFERIOR, -0.05, 0.03, MARGIN) == (-0.05, MARGIN)
    assert decided_interval(PRECISE, -0.004, 0.005, MARGIN) == (-0.004, 0.005)


def test_adaptive_shards_keep_a_benchmarks_multipliers_together(tmp_path) -> None:
    """--adaptive --shard i/n: a benchmark (subset) and all its multipliers, 0 among them, in one
    shard; the shards still partition the grid; each cell's alpha counts every shard's cells."""
    from steerbench.core.config import load_benchmarks, load_deployments
    from steerbench.core.plan import RunOptions, build_plan
    from steerbench.execution.adaptive import tests_in
    from steerbench.tasks.resolve import resolve_benchmarks
    from tests.helpers import TASKS_FILE, write_jsonl

    multipliers = ["-1.0", "0.0", "0.5", "1.0"]
    write_jsonl(
        tmp_path / "deployments.jsonl",
        [{"multiplier": m, "url": f"http://127.0.0.1:{9000 + i}/v1/", "key": "k"} for i, m in enumerate(multipliers)],
    )
    write_jsonl(
        tmp_path / "benchmarks.jsonl",
        [
            {"name": f"B{i}", "eval_name": f"{TASKS_FILE}@arithmetic", "category": "C", "task_args": {"offset": i}}
            for i in range(9)
        ]
        + [
            {
                "name": "Subsets",
                "eval_name": f"{TASKS_FILE}@arithmetic",
                "category": "C",
                "subsets": [{"offset": 100}, {"offset": 200}],
            }
        ],
    )
    deployments = load_deployments(tmp_path / "deployments.jsonl")
    benchmarks = load_benchmarks(tmp_path / "benchmarks.jsonl")
    signatures = resolve_benchmarks(benchmarks)
    settings = AdaptiveSettings()
    seen = []
    for i in (1, 2, 3):
        plan = build_plan(deployments, benchmarks, signatures, RunOptions(all=True, shard=(i, 3), adaptive=settings))
        groups: dict = {}
        for cell in plan.cells:
            groups.setdefault((cell.benchmark, cell.subset), set()).add(cell.multiplier.value)
        assert all(values == {-1.0, 0.0, 0.5, 1.0} for values in groups.values()), groups
        assert tests_in(plan) == 11 * 3  # every shard's cells != 0
        seen += [cell.key for cell in plan.cells]
    assert len(seen) == len(set(seen)) == 11 * 4
