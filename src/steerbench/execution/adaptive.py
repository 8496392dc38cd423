"""Running an adaptive study: batch after batch through the ordinary run, until every cell is decided.

Each round reads the logs (through `judge`, which the CLI passes in: judging is results' work, and
execution sits below results), asks core.adaptive which positions each cell runs next, and runs
those batches as ordinary cells, one log folder per batch (Cell.folder), in the worker processes
of `execute`. Nothing is kept between rounds but the logs, so a killed run, started again, asks
for the batch it was running, in the same folder, and Inspect's eval set resumes it there: the
samples it had finished are reused, never asked again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..core.adaptive import AdaptiveSettings, AdaptiveSlice, CellView, next_batches
from ..core.plan import Cell, Plan
from .run import CellOutcome, RunResult


@dataclass(frozen=True)
class Judged:
    """What planning needs of the logs for one benchmark (subset)."""

    population: int | None
    cells: tuple[CellView, ...]


# log root -> {(benchmark, subset): Judged}
Judge = Callable[[str], dict[tuple[str, str], Judged]]


def tests_in(plan: Plan) -> int:
    """The cells tested against multiplier 0, over the whole grid (every shard's: the family alpha
    is split over all of them, so shards together keep the family's error)."""
    others = sum(1 for d in plan.deployments if d.multiplier.value != 0)
    return sum(len(b.subsets) for b in plan.benchmarks) * others


def next_cells(
    plan: Plan, judged: dict[tuple[str, str], Judged], settings: AdaptiveSettings, alpha: float
) -> list[Cell]:
    """The cells (with their batch's positions) of the next round: a pure function of the logs' state."""
    chosen: list[Cell] = []
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in plan.cells:
        groups.setdefault((cell.benchmark, cell.subset), []).append(cell)
    for key, cells in groups.items():
        seen = judged.get(key, Judged(None, ()))
        views = {v.multiplier: v for v in seen.cells}
        # cells without a batch yet are open at 0
        full = [views.get(c.multiplier.value, CellView(c.multiplier.value, 0, "open")) for c in cells]
        by_value = {c.multiplier.value: c for c in cells}
        for request in next_batches(full, settings.first_batch, seen.population, settings.goal):
            chosen.append(
                replace(
                    by_value[request.multiplier],
                    adaptive=AdaptiveSlice(
                        settings.seed,
                        request.start,
                        request.stop,
                        alpha,
                        settings.margin,
                        settings.precision,
                        settings.goal,
                    ),
                )
            )
    return chosen


def run_adaptive(
    plan: Plan,
    log_root: str,
    judge: Judge,
    run_round: Callable[[Plan], RunResult],
    say: Callable[[str], None] = lambda line: None,
) -> RunResult:
    """Rounds of batches until no cell is open; stops at the first round with a failed cell
    (the same command resumes it). `run_round` runs one plan (execution.study.run_study)."""
    settings = plan.options.adaptive
    assert settings is not None
    alpha = settings.cell_alpha(tests_in(plan))
    outcomes: list[CellOutcome] = []
    seconds = 0.0
    round_number = 0
    while True:
        cells = next_cells(plan, judge(log_root), settings, alpha)
        if not cells:
            say(f"adaptive: every cell is decided or exhausted after {round_number} round(s) in this run")
            return RunResult(tuple(outcomes), seconds)
        round_number += 1
        say(f"adaptive round {round_number}: {len(cells)} batch(es): " + describe(cells))
        result = run_round(replace(plan, cells=tuple(cells)))
        outcomes.extend(result.outcomes)
        seconds += result.seconds
        if result.failed:
            say("adaptive: a batch failed; run the same command again to resume it")
            return RunResult(tuple(outcomes), seconds)


def describe(cells: list[Cell]) -> str:
    """One benchmark per part: `MMLU [50, 100) x 7`."""
    parts: dict[tuple[str, int, int], int] = {}
    for c in cells:
        assert c.adaptive is not None
        key = (c.label, c.adaptive.start, c.adaptive.stop)
        parts[key] = parts.get(key, 0) + 1
    return "; ".join(f"{label} [{a}, {b}) x {n}" for (label, a, b), n in parts.items())


def judged_from(study: Any) -> dict[tuple[str, str], Judged]:
    """results.adaptive.AdaptiveStudy -> what planning needs (duck-typed: execution cannot import results)."""
    return {key: Judged(study.population(*key), tuple(study.views(*key))) for key in study.benchmarks()}
