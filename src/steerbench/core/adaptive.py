"""Adaptive studies, the pure part: sample order, batch sizes, and which samples run next.

Every benchmark (subset) is taken in one seeded random order: a sample's place is the SHA-256 of
(seed, benchmark, subset, sample id), so the order is a function of the ids alone (any machine,
any dataset order, no file needed) and is a uniformly random permutation for practical purposes.
Each cell runs a prefix of that order, in batches whose cumulative sizes double: first, 2 first,
4 first, ... up to the whole benchmark. Multiplier 0 runs every sample that any other multiplier
of its benchmark runs, so every comparison with it is paired.

The next batch is a pure function of what the logs hold (`next_batches`): each cell's prefix
length, its state (results.adaptive) and the benchmark's size. A killed run, re-run, asks for the
same batch again, into the same log folder, where Inspect's eval set resumes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_MARGIN = 0.02
DEFAULT_PRECISION = 0.01
DEFAULT_FIRST_BATCH = 50
DEFAULT_SEED = 0
FAMILY_ALPHA = 0.05
GOALS = ("curves", "safe-range")

# cell states (results.adaptive decides the first five from the samples)
OPEN = "open"
NON_INFERIOR = "non-inferior"
HARMFUL = "harmful"
PRECISE = "precise"
EXHAUSTED = "exhausted"
BEYOND_HARMFUL = "beyond-harmful"  # --goal safe-range: past the first harmful multiplier on its side
STATES = (OPEN, NON_INFERIOR, HARMFUL, PRECISE, EXHAUSTED, BEYOND_HARMFUL)
DECIDED = (NON_INFERIOR, HARMFUL, PRECISE, EXHAUSTED, BEYOND_HARMFUL)


@dataclass(frozen=True)
class AdaptiveSettings:
    margin: float = DEFAULT_MARGIN  # delta, harm on the metric's 0-1 scale
    precision: float = DEFAULT_PRECISION  # stop once the interval is this narrow
    first_batch: int = DEFAULT_FIRST_BATCH
    goal: str = "curves"
    seed: int = DEFAULT_SEED
    family_alpha: float = FAMILY_ALPHA

    def cell_alpha(self, tests: int) -> float:
        """Bonferroni: each of the study's `tests` cells (multiplier != 0) gets family_alpha / tests."""
        return self.family_alpha / max(tests, 1)


@dataclass(frozen=True)
class AdaptiveSlice:
    """The part of a benchmark's order one batch of one cell runs: positions [start, stop)."""

    seed: int
    start: int
    stop: int
    alpha: float  # the cell's share of the family's alpha
    margin: float
    precision: float
    goal: str

    @property
    def folder(self) -> str:
        return f"adaptive_{self.start}-{self.stop}"


def order_key(seed: int, benchmark: str, subset: str, sample_id: object) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{benchmark}\x1f{subset}\x1f{sample_id}".encode()).digest()


def sample_order(ids: Iterable[object], seed: int, benchmark: str, subset: str) -> list[str]:
    """The benchmark's sample ids (as strings) in the study's random order."""
    return sorted((str(i) for i in ids), key=lambda i: order_key(seed, benchmark, subset, i))


def batch_ends(first: int, population: int) -> list[int]:
    """Cumulative prefix lengths: first, 2 first, 4 first, ..., population."""
    ends, n = [], first
    while n < population:
        ends.append(n)
        n *= 2
    return ends + [population]


def next_end(done: int, first: int, population: int | None) -> int | None:
    """The next cumulative prefix length after `done` (None: the benchmark is exhausted).
    An unknown population (nothing ran yet) gives the first batch."""
    if population is None:
        n = first
        while n <= done:
            n *= 2
        return n
    return next((end for end in batch_ends(first, population) if end > done), None)


@dataclass(frozen=True)
class CellView:
    """What planning needs to know of one cell of one benchmark (subset)."""

    multiplier: float
    done: int  # prefix length its successful batches cover
    state: str  # STATES; OPEN for multiplier 0


@dataclass(frozen=True)
class BatchRequest:
    multiplier: float
    start: int
    stop: int


def beyond_first_harmful(states: dict[float, str]) -> set[float]:
    """Multipliers past the first harmful one on their side of 0 (nearest to 0 first)."""
    beyond: set[float] = set()
    for sign in (-1.0, 1.0):
        side = sorted((m for m in states if m * sign > 0), key=abs)
        harmful = next((i for i, m in enumerate(side) if states[m] == HARMFUL), None)
        if harmful is not None:
            beyond.update(side[harmful + 1 :])
    return beyond


def effective_states(cells: Sequence[CellView], goal: str) -> dict[float, str]:
    """Each cell's state, with --goal safe-range's cells past the first harmful one stopped."""
    states = {c.multiplier: c.state for c in cells}
    if goal == "safe-range":
        for m in beyond_first_harmful(states):
            if states[m] == OPEN:
                states[m] = BEYOND_HARMFUL
    return states


def next_batches(
    cells: Sequence[CellView], first: int, population: int | None, goal: str = "curves"
) -> list[BatchRequest]:
    """The next batch of one benchmark (subset): every open cell moves to the next prefix length,
    multiplier 0 to the longest prefix any other cell runs. When multiplier 0 lags behind another
    cell (a run killed between the two), it catches up first, so no cell is extended before its
    current prefix has been judged against multiplier 0."""
    zero = next((c for c in cells if c.multiplier == 0), None)
    if zero is None:
        return []
    others = [c for c in cells if c.multiplier != 0]
    states = effective_states(others, goal)
    open_cells = [c for c in others if states[c.multiplier] == OPEN and (population is None or c.done < population)]
    if not open_cells:
        return []
    furthest = max(c.done for c in open_cells)
    if zero.done < furthest:
        return [BatchRequest(0.0, zero.done, furthest)]
    end = next_end(min(c.done for c in open_cells), first, population)
    if end is None:
        return []
    requests = [BatchRequest(c.multiplier, c.done, end) for c in open_cells if c.done < end]
    if zero.done < end:
        requests.insert(0, BatchRequest(0.0, zero.done, end))
    return requests


def shard_key(benchmark: str, subset: str) -> str:
    """What an adaptive run shards by: the benchmark (subset), so that a shard holds all of its
    multipliers and every decision sees multiplier 0."""
    return f"{benchmark}|{subset}"
