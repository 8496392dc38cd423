"""Cells a reader should not trust without looking: listed by `steerbench aggregate` and the report.

Works from the aggregate rows alone (log headers), so `aggregate` can list flags without
reading any sample; the report passes its per-sample estimates for a sharper check.

- missing: planned (or present at other multipliers of the grid) but no log;
- failed / partial: the cell's latest log did not succeed, or succeeded with samples missing;
- sample count: a cell scored a different number of samples than the rest of its benchmark;
- scale: a headline metric that is not on the 0-1 scale of the others (XSTest's refusal_rate
  is 0-100; figures and tables divide it by 100);
- suspicious: a cell above (or below) *both* neighbouring multipliers by more than
  SUSPICIOUS_FACTOR times the 95% half-width of each difference. A real effect of steering
  changes smoothly with the multiplier; a lone spike is usually a broken endpoint or run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.cells import cell_label, multiplier_sort_key
from .scores import Metric, headline_metric
from .stats import Z_95

SUSPICIOUS_FACTOR = 3.0
# the report adds "unreadable" (a cell's samples could not be read), "score mismatch"
# (the samples do not rebuild the metric the log reports), and "output truncated" / "output
# empty" (a share significantly above multiplier 0's, results/steering_range.py)
KINDS = (
    "missing",
    "failed",
    "partial",
    "sample count",
    "scale",
    "suspicious",
    "unreadable",
    "score mismatch",
    "output truncated",
    "output empty",
)


@dataclass(frozen=True)
class Flag:
    kind: str  # one of KINDS
    benchmark: str
    subset: str
    multiplier: str | None  # None: the whole benchmark
    message: str

    @property
    def where(self) -> str:
        name = cell_label(self.benchmark, self.subset)
        return name if self.multiplier is None else f"{name} at multiplier {self.multiplier}"

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.message}"


@dataclass(frozen=True)
class CellEstimate:
    """A cell's headline value on the 0-1 scale, its standard error and sample count."""

    value: float
    se: float
    n: int


SeriesKey = tuple[str, str]  # (benchmark, subset)
Estimates = dict[tuple[str, str, float], CellEstimate]  # (benchmark, subset, multiplier value)


def series_rows(rows: Sequence[dict[str, Any]]) -> dict[SeriesKey, list[dict[str, Any]]]:
    """Rows grouped by benchmark (subset), each group in multiplier order."""
    groups: dict[SeriesKey, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["benchmark"], _subset(row)), []).append(row)
    for group in groups.values():
        group.sort(key=lambda r: multiplier_sort_key(str(r["multiplier"])))
    return groups


def _subset(row: dict[str, Any]) -> str:
    subset = row.get("subset")
    return subset if isinstance(subset, str) else ""


def _present(row: dict[str, Any]) -> bool:
    return row.get("status") != "missing"


def row_estimate(row: dict[str, Any], metric: Metric) -> CellEstimate | None:
    """A cell's estimate from its CSV row: the log's own stderr, else a binomial one."""
    column = metric.column(row)
    value: Any = row.get(column) if column else None
    if row.get("status") != "success" or not _finite(value):
        return None
    fraction = float(value) / metric.scale
    n = int(row.get("completed_samples") or row.get("n_samples") or 0)
    stderr: Any = row.get(metric.stderr_column) if metric.stderr_column else None
    if _finite(stderr):
        se = float(stderr)
    else:
        se = math.sqrt(max(fraction * (1 - fraction), 0.0) / n) if n else math.nan
    return CellEstimate(fraction, se, n)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def find_flags(rows: Sequence[dict[str, Any]], estimates: Estimates | None = None) -> list[Flag]:
    """Every flag of the grid, benchmark by benchmark in multiplier order."""
    groups = series_rows(rows)
    grid = _grid(rows)
    flags: list[Flag] = []
    for (benchmark, subset), group in groups.items():
        metric = headline_metric([r for r in group if r.get("status") == "success"])
        flags += _missing(benchmark, subset, group, grid)
        flags += _unsuccessful(benchmark, subset, group)
        flags += _sample_counts(benchmark, subset, group)
        if metric is not None:
            flags += _scale(benchmark, subset, group, metric)
            cells = _estimates(benchmark, subset, group, metric, estimates)
            flags += _suspicious(benchmark, subset, cells, metric)
    return flags


def _grid(rows: Sequence[dict[str, Any]]) -> dict[float, str]:
    labels: dict[float, str] = {}
    for row in rows:
        labels.setdefault(multiplier_sort_key(str(row["multiplier"])), str(row["multiplier"]))
    return dict(sorted(labels.items()))


def _missing(benchmark: str, subset: str, group: list[dict[str, Any]], grid: dict[float, str]) -> list[Flag]:
    flags = [
        Flag("missing", benchmark, subset, str(r["multiplier"]), "planned, but there is no log")
        for r in group
        if not _present(r)
    ]
    have = {multiplier_sort_key(str(r["multiplier"])) for r in group}
    for value, label in grid.items():
        if value not in have:
            flags.append(
                Flag("missing", benchmark, subset, label, "no log, while other benchmarks have this multiplier")
            )
    return sorted(flags, key=lambda f: multiplier_sort_key(f.multiplier or ""))


def _unsuccessful(benchmark: str, subset: str, group: list[dict[str, Any]]) -> list[Flag]:
    flags = []
    for row in filter(_present, group):
        done, total = int(row.get("completed_samples") or 0), int(row.get("n_samples") or 0)
        if row.get("status") != "success":
            flags.append(
                Flag(
                    "failed",
                    benchmark,
                    subset,
                    str(row["multiplier"]),
                    f"its latest log is '{row.get('status')}' ({done}/{total} samples); not used in figures or statistics",
                )
            )
        elif done < total:
            flags.append(
                Flag(
                    "partial", benchmark, subset, str(row["multiplier"]), f"only {done} of {total} samples were scored"
                )
            )
    return flags


def _sample_counts(benchmark: str, subset: str, group: list[dict[str, Any]]) -> list[Flag]:
    # an adaptive cell stops at its own sample count on purpose (results.adaptive): not a flag
    counts = {
        str(r["multiplier"]): int(r.get("n_samples") or 0)
        for r in group
        if _present(r) and r.get("n_samples") and not r.get("adaptive_state")
    }
    if len(set(counts.values())) <= 1:
        return []
    tally = Counter(counts.values())
    usual = max(tally, key=lambda n: (tally[n], n))  # the most common count (the larger on a tie)
    return [
        Flag("sample count", benchmark, subset, label, f"{n} samples, while the other multipliers have {usual}")
        for label, n in counts.items()
        if n != usual
    ]


def _scale(benchmark: str, subset: str, group: list[dict[str, Any]], metric: Metric) -> list[Flag]:
    if metric.scale != 1:
        return [
            Flag(
                "scale",
                benchmark,
                subset,
                None,
                f"{metric.name} is reported on a 0-{metric.scale:g} scale while the other metrics are 0-1; "
                f"figures and tables divide it by {metric.scale:g}",
            )
        ]
    column = metric.column(group[0]) or metric.name
    if any(_finite(r.get(column)) and float(r[column]) > 1 for r in group):
        return [
            Flag(
                "scale",
                benchmark,
                subset,
                None,
                f"{metric.name} has values above 1, so it is not on the 0-1 scale of the other metrics",
            )
        ]
    return []


def _estimates(
    benchmark: str, subset: str, group: list[dict[str, Any]], metric: Metric, estimates: Estimates | None
) -> list[tuple[str, CellEstimate]]:
    cells = []
    for row in group:
        if row.get("status") != "success":
            continue
        key = (benchmark, subset, multiplier_sort_key(str(row["multiplier"])))
        # the report's per-sample estimate when it has one, else the row's own
        estimate = (estimates or {}).get(key) or row_estimate(row, metric)
        if estimate is not None and _finite(estimate.value):
            cells.append((str(row["multiplier"]), estimate))
    return cells


def _effective_se(cell: CellEstimate) -> float:
    # A cell whose samples all agree has a zero standard error, which would make any step
    # "significant"; floor it at the binomial error of one more right and one more wrong sample.
    smoothed = (cell.value * cell.n + 1) / (cell.n + 2) if cell.n else 0.5
    floor = math.sqrt(smoothed * (1 - smoothed) / max(cell.n, 1))
    return max(cell.se, floor) if _finite(cell.se) else floor


def is_spike(cell: CellEstimate, left: CellEstimate, right: CellEstimate, factor: float = SUSPICIOUS_FACTOR) -> bool:
    """Above both neighbours or below both, each by more than `factor` x the difference's 95% half-width."""
    steps = [cell.value - left.value, cell.value - right.value]
    if not (all(s > 0 for s in steps) or all(s < 0 for s in steps)):
        return False
    limit: Callable[[CellEstimate], float] = lambda other: (  # noqa: E731
        factor * Z_95 * math.hypot(_effective_se(cell), _effective_se(other))
    )
    return abs(steps[0]) > limit(left) and abs(steps[1]) > limit(right)


def _suspicious(benchmark: str, subset: str, cells: list[tuple[str, CellEstimate]], metric: Metric) -> list[Flag]:
    flags = []
    for (left_label, left), (label, cell), (right_label, right) in zip(cells, cells[1:], cells[2:]):
        if is_spike(cell, left, right):
            side = "above" if cell.value > left.value else "below"
            flags.append(
                Flag(
                    "suspicious",
                    benchmark,
                    subset,
                    label,
                    f"{metric.label} {cell.value:.3f} is {side} both neighbours ({left.value:.3f} at {left_label}, "
                    f"{right.value:.3f} at {right_label}) by more than {SUSPICIOUS_FACTOR:g}x their 95% intervals; "
                    "check this cell's log before trusting it",
                )
            )
    return flags


@dataclass(frozen=True)
class MissingGroup:
    """Missing cells said in one line: a benchmark's several multipliers, or the whole grid."""

    benchmark: str | None  # None: every benchmark
    subset: str
    multipliers: tuple[str, ...]
    message: str
    cells: int = 0  # for the whole grid: how many planned cells
    everywhere: bool = False  # the benchmark is missing at every multiplier of the grid

    kind = "missing"

    def __str__(self) -> str:
        if self.benchmark is None:
            return f"missing: {self.cells} of {self.cells} planned cells (every benchmark at every multiplier)"
        label = cell_label(self.benchmark, self.subset)
        where = (
            f"every multiplier ({', '.join(self.multipliers)})"
            if self.everywhere
            else f"multipliers {', '.join(self.multipliers)}"
        )
        return f"missing: {label} at {where}: {self.message}"


def grouped(flags: Sequence[Flag], rows: Sequence[dict[str, Any]]) -> list[Flag | MissingGroup]:
    """The flags with their missing cells grouped: one line for a grid with no log at all, else one
    line per benchmark (subset) listing the multipliers it is missing at; other flags unchanged."""
    present = [r for r in rows if _present(r)]
    missing = [f for f in flags if f.kind == "missing"]
    if rows and not present and len(missing) == len(rows):
        return [MissingGroup(None, "", (), "no log", cells=len(rows))] + [f for f in flags if f.kind != "missing"]
    grid = _grid(rows)
    groups: dict[tuple[str, str, str], list[Flag]] = {}
    for flag in missing:
        groups.setdefault((flag.benchmark, flag.subset, flag.message), []).append(flag)
    out: list[Flag | MissingGroup] = []
    said: set[tuple[str, str, str]] = set()
    for flag in flags:
        key = (flag.benchmark, flag.subset, flag.message)
        if flag.kind != "missing" or len(groups[key]) == 1:
            out.append(flag)
        elif key not in said:
            said.add(key)
            labels = tuple(f.multiplier or "" for f in groups[key])
            out.append(
                MissingGroup(flag.benchmark, flag.subset, labels, flag.message, everywhere=len(labels) == len(grid) > 1)
            )
    return out
