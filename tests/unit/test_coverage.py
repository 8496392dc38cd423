"""A fast subset of bench/coverage.py: the report's intervals cover and its tests hold alpha at small n and at the edges."""

from __future__ import annotations

import importlib.util
import math

import pytest

from tests.helpers import REPO

REPS = 300


def coverage_module():
    spec = importlib.util.spec_from_file_location("coverage_bench", REPO / "bench" / "coverage.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_intervals_cover_and_tests_hold_alpha_at_small_n_and_the_edges() -> None:
    bench = coverage_module()
    rows = bench.run(REPS, seed=1, ns=(20, 40), ps=(0.0, 0.02, 0.5, 1.0))
    noise = 3 * math.sqrt(0.05 * 0.95 / REPS)  # three Monte Carlo standard errors at alpha
    for row in rows:
        where = f"n={row['n']} p={row['p']}"
        assert row["cell 0/1 exact"] >= 0.93, where  # no simulation noise here
        for column in ("cell 0/1", "cell epochs", "paired 0/1 no change", "paired 0/1 change", "paired epochs"):
            assert row[column] >= 0.93 - noise, (where, column, row[column])
        for column in ("McNemar size", "sign-flip size"):
            assert row[column] <= 0.05 + noise, (where, column, row[column])
    # the edges are there: p = 0 and p = 1 are all-equal cells, and their intervals still cover
    assert [r["cell 0/1"] for r in rows if r["p"] in (0.0, 1.0)] == [1.0] * 4


@pytest.mark.parametrize("margin", [0.02, 0.1])
def test_the_non_inferiority_test_holds_alpha_exactly(margin: float) -> None:
    bench = coverage_module()
    for n in (20, 40):
        assert bench.ni_size(n, margin) <= 0.05
