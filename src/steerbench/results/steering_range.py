"""How far one can steer, for the report: safe ranges, slopes and output-health flags of an analysis.

The statistics are in results/safe_range.py and the measures in results/health.py; this module
feeds them an Analysis (results/analysis.py): each benchmark's headline per-sample scores, and
each cell's per-sample health records from the sidecar next to its log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.cells import cell_label, multiplier_sort_key
from .flags import Flag, series_rows
from .health import by_sample, parse_sidecar, sidecar_path
from .safe_range import (
    DEFAULT_MARGIN,
    SAFE_RANGE_COLUMNS,
    CellTest,
    HealthFlag,
    SafeRange,
    SeriesScores,
    SideSlopes,
    common_range,
    health_flags,
    noninferiority_tests,
    safe_ranges,
    side_slopes,
)
from .stats import ALPHA

SAFE_RANGE_CSV = "safe_range.csv"
FLAGGED_MEASURES = ("truncated", "empty")  # shares tested against multiplier 0
HEALTH_KINDS = {"truncated": "output truncated", "empty": "output empty"}
HealthSeries = dict[str, dict[float, dict[str, float]]]  # measure -> multiplier value -> sample id -> value


def read_cell_health(log_file: str) -> dict[str, dict[str, float]]:
    """measure ("truncated", "empty", "repetition", "tokens") -> sample id -> its value (mean over
    epochs), from the log's sidecar; {} when the log has none."""
    from ..logs.sidecars import read_text

    text = read_text(sidecar_path(log_file)) if log_file else None
    document = parse_sidecar(text) if text else None
    if document is None:
        return {}
    records = document["samples"]
    return {measure: by_sample(records, measure) for measure in ("truncated", "empty", "repetition", "tokens")}


@dataclass
class SteeringRange:
    """The safe-range part of an analysis."""

    margin: float
    tests: list[CellTest] = field(default_factory=list)
    ranges: list[SafeRange] = field(default_factory=list)
    slopes: dict[tuple[str, str], SideSlopes] = field(default_factory=dict)  # one slope per side of 0
    health: list[HealthFlag] = field(default_factory=list)
    capability: tuple[float, float] | None = None  # the range safe for every capability benchmark
    capability_benchmarks: list[str] = field(default_factory=list)
    without_direction: list[str] = field(default_factory=list)  # series the direction table leaves out

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.ranges]


def steering_range(
    series: Sequence[Any],
    cells: dict[tuple[str, str, float], Any],
    multipliers: dict[float, str],
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
) -> SteeringRange:
    """series: analysis.Series; cells: (benchmark, subset, multiplier value) -> analysis.CellResult."""
    scored: list[SeriesScores] = []
    health: dict[tuple[str, str], HealthSeries] = {}
    for one in series:
        name = one.headline.name
        own = {value: cell for (b, s, value), cell in cells.items() if (b, s) == one.key}
        values = {value: cell.scores[name].values for value, cell in own.items() if name in cell.scores}
        eval_name = next((str(c.row.get("eval_name") or "") for c in own.values()), "")
        scored.append(SeriesScores(one.benchmark, one.subset, name, values, multipliers, eval_name))
        health[one.key] = health_series({v: c.health for v, c in own.items()})
    tests = noninferiority_tests(scored, margin, alpha)
    ranges = safe_ranges(scored, margin, alpha, tests)
    capability_keys = {s.key for s in series if not s.is_safety}
    capability = [r for r in ranges if (r.benchmark, r.subset) in capability_keys]
    return SteeringRange(
        margin=margin,
        tests=tests,
        ranges=ranges,
        slopes={s.key: side_slopes(s.cells) for s in scored},
        health=health_flags(health, multipliers, alpha),
        capability=common_range(capability),
        capability_benchmarks=[r.label for r in capability],
        without_direction=[cell_label(s.benchmark, s.subset) for s in scored if s.harm is None],
    )


def health_series(cells: dict[float, dict[str, dict[str, float]]]) -> HealthSeries:
    """One benchmark's cells (multiplier value -> measure -> sample id -> value) as the flag test takes them."""
    return {m: {v: health[m] for v, health in cells.items() if health.get(m)} for m in FLAGGED_MEASURES}


def row_health_flags(rows: Sequence[dict[str, Any]], alpha: float = ALPHA) -> list[Flag]:
    """The output-health flags from the aggregate's rows alone, as `steerbench aggregate` lists them:
    each successful cell's health sidecar, the same tests and Holm family as the report's."""
    labels: dict[float, str] = {}
    found: dict[tuple[str, str], HealthSeries] = {}
    for key, group in series_rows(rows).items():
        cells = {}
        for row in group:
            labels.setdefault(multiplier_sort_key(str(row["multiplier"])), str(row["multiplier"]))
            if row.get("status") == "success":
                cells[multiplier_sort_key(str(row["multiplier"]))] = read_cell_health(str(row.get("log_file") or ""))
        found[key] = health_series(cells)
    return health_flag_list(health_flags(found, dict(sorted(labels.items())), alpha))


def health_flag_list(found: Sequence[HealthFlag]) -> list[Flag]:
    """The flagged cells as report flags."""
    flags = []
    for h in found:
        if not h.flagged:
            continue
        t = h.test
        flags.append(
            Flag(
                HEALTH_KINDS[h.measure],
                h.benchmark,
                h.subset,
                h.multiplier,
                f"{h.measure} share {t.at_multiplier:.0%} against {t.at_zero:.0%} at multiplier 0 over {t.n_pairs} "
                f"paired samples ({t.up} more, {t.down} fewer; one-sided sign test, Holm p = {_p(h.p_holm)})",
            )
        )
    return flags


def _p(value: float) -> str:
    return "<0.0001" if 0 <= value < 1e-4 else f"{value:.4f}"


def write_safe_range_csv(found: SteeringRange, path: str) -> None:
    import pandas as pd

    from ..core.paths import ensure_parent

    ensure_parent(path)
    pd.DataFrame(found.rows(), columns=SAFE_RANGE_COLUMNS).to_csv(path, index=False)
