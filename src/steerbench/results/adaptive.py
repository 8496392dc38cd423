"""Adaptive studies, judged from their logs: each cell's state and its anytime-valid interval.

Each batch of an adaptive run (core.adaptive) is a log of its own whose steerbench metadata says
which positions of the benchmark's order it ran, and with which margin, precision, goal and alpha.
A cell's samples are the union of its successful batches (merged by sample id); the prefix it
covers is the longest run of positions from 0 that those batches cover.

State of a cell at multiplier m != 0, from the paired harms with multiplier 0 (as in the safe
range: per metric direction, on the metric's 0-1 scale) in the benchmark's order, through a
betting confidence sequence (results.confseq) at the cell's share alpha of the family's 0.05:

- non-inferior: the sequence lay wholly below the margin at some point (harm < margin);
- harmful: it lay wholly above the margin (harm > margin);
- precise: neither, but the interval is at most `precision` wide;
- exhausted: the whole benchmark ran and none of the above;
- beyond-harmful: --goal safe-range only: a multiplier past the first harmful one on its side;
- open: none of these yet; the next batch runs it.

Whichever of non-inferior / harmful came first (in samples) is the one that counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.adaptive import (
    BEYOND_HARMFUL,
    EXHAUSTED,
    HARMFUL,
    NON_INFERIOR,
    OPEN,
    PRECISE,
    CellView,
    effective_states,
    order_key,
)
from ..core.cells import multiplier_sort_key
from .aggregate import LogHeader, read_headers
from .confseq import confidence_sequence, from_unit, to_unit
from .safe_range import harm_direction, paired_harm
from .stats import in_unit_range
from .scores import family, headline_metric, read_samples, cell_scores

Ident = tuple[str, str, float]  # benchmark, subset, multiplier value

REASONS = {
    NON_INFERIOR: "the interval lies below the margin",
    HARMFUL: "the interval lies above the margin",
    PRECISE: "the interval is narrower than --precision",
    EXHAUSTED: "every sample ran",
    BEYOND_HARMFUL: "a multiplier nearer 0 on this side is harmful (--goal safe-range)",
    OPEN: "still open",
}


@dataclass(frozen=True)
class AdaptiveCell:
    benchmark: str
    subset: str
    category: str
    multiplier: str
    multiplier_value: float
    done: int  # positions of the order its successful batches cover, from 0
    population: int | None  # the benchmark's samples
    state: str
    n_pairs: int = 0  # samples scored both here and at multiplier 0
    harm: float = math.nan  # mean paired harm
    low: float = math.nan  # the confidence sequence's interval for the mean harm, now
    high: float = math.nan
    decided_after: int | None = None  # pairs seen when the interval first left the margin
    reason: str = ""
    log_files: tuple[str, ...] = ()
    tokens: int = 0  # generated and prompt tokens of its batches (the log's total_tokens)

    @property
    def ident(self) -> Ident:
        return self.benchmark, self.subset, self.multiplier_value

    @property
    def stopped_early(self) -> bool:
        return self.state not in (OPEN, EXHAUSTED) and self.population is not None and self.done < self.population

    @property
    def short(self) -> str:
        """What the status grid shows."""
        used = f"{self.done}/{self.population}" if self.population else str(self.done)
        if self.multiplier_value == 0:
            return f"baseline {used}"
        interval = "" if math.isnan(self.low) else f" [{self.low:+.3f}, {self.high:+.3f}]"
        return f"{self.state} {used}{interval}"


@dataclass
class AdaptiveStudy:
    cells: dict[Ident, AdaptiveCell] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # margin, precision, goal, seed, alpha (per cell)

    def benchmarks(self) -> list[tuple[str, str]]:
        return sorted({(c.benchmark, c.subset) for c in self.cells.values()})

    def views(self, benchmark: str, subset: str) -> list[CellView]:
        return [
            CellView(c.multiplier_value, c.done, c.state)
            for c in self.cells.values()
            if (c.benchmark, c.subset) == (benchmark, subset)
        ]

    def population(self, benchmark: str, subset: str) -> int | None:
        return next(
            (
                c.population
                for c in self.cells.values()
                if (c.benchmark, c.subset) == (benchmark, subset) and c.population
            ),
            None,
        )


def covered(headers: Sequence[LogHeader]) -> tuple[int, int | None, list[LogHeader]]:
    """(prefix length, population, the successful batches inside it) of one cell's batch logs."""
    population = max((int(h.adaptive.get("population") or 0) for h in headers if h.adaptive), default=0) or None
    ranges: dict[tuple[int, int], LogHeader] = {}
    for h in sorted(headers, key=lambda h: h.created):
        if h.status == "success" and h.adaptive:
            start = int(h.adaptive["start"])
            stop = min(int(h.adaptive["stop"]), population or int(h.adaptive["stop"]))
            ranges[(start, stop)] = h
    done, used = 0, []
    while True:
        step = max(((a, b) for (a, b) in ranges if a <= done < b), key=lambda r: r[1], default=None)
        if step is None:
            break
        used.append(ranges[step])
        done = step[1]
    return done, population, used


def judge(log_root: str, headers: Sequence[LogHeader] | None = None) -> AdaptiveStudy:
    """Every adaptive cell of the log root, with its state (reads the batches' sample scores)."""
    if headers is None:
        headers, _ = read_headers(log_root)
    batches: dict[Ident, list[LogHeader]] = {}
    for h in headers:
        if h.adaptive:
            batches.setdefault((h.benchmark, h.subset, multiplier_sort_key(h.multiplier)), []).append(h)
    study = AdaptiveStudy()
    if not batches:
        return study
    first = min((h for hs in batches.values() for h in hs), key=lambda h: h.created).adaptive or {}
    study.settings = {k: first.get(k) for k in ("margin", "precision", "goal", "seed", "alpha")}
    by_benchmark: dict[tuple[str, str], dict[float, list[LogHeader]]] = {}
    for (benchmark, subset, value), hs in batches.items():
        by_benchmark.setdefault((benchmark, subset), {})[value] = hs
    for (benchmark, subset), cells in by_benchmark.items():
        study.cells.update(_judge_benchmark(benchmark, subset, cells))
    return study


def _judge_benchmark(benchmark: str, subset: str, cells: dict[float, list[LogHeader]]) -> dict[Ident, AdaptiveCell]:
    coverage = {value: covered(hs) for value, hs in cells.items()}
    population = max((p for _, p, _ in coverage.values() if p), default=None)
    rows = [h.row for hs in cells.values() for h in hs if h.status == "success"]
    metric = headline_metric(rows)
    any_header = next(iter(cells.values()))[0]
    settings = any_header.adaptive or {}
    eval_name = str(any_header.row.get("eval_name") or "")
    direction = harm_direction(benchmark, subset, metric.name, eval_name) if metric else None
    values: dict[float, dict[str, float]] = {}
    if metric is not None:
        for value, (_, _, used) in coverage.items():
            scores = cell_scores(read_samples([str(h.row["log_file"]) for h in used]), family(metric))
            values[value] = scores[metric.name].values if metric.name in scores else {}
    judged: dict[Ident, AdaptiveCell] = {}
    for value, hs in cells.items():
        done, _, used = coverage[value]
        base: dict[str, Any] = dict(
            benchmark=benchmark,
            subset=subset,
            category=hs[0].category,
            multiplier=hs[0].multiplier,
            multiplier_value=value,
            done=done,
            population=population,
            log_files=tuple(str(h.row["log_file"]) for h in used),
            tokens=sum(int(h.row.get("total_tokens") or 0) for h in used),
        )
        if value == 0:
            judged[(benchmark, subset, value)] = AdaptiveCell(state=OPEN, reason="multiplier 0: the baseline", **base)
            continue
        if metric is None or direction is None or 0.0 not in values:
            why = (
                "no headline metric"
                if metric is None
                else ("no harm direction for " + metric.name if direction is None else "no multiplier 0 yet")
            )
            state = EXHAUSTED if population is not None and done >= population else OPEN
            judged[(benchmark, subset, value)] = AdaptiveCell(state=state, reason=why, **base)
            continue
        judged[(benchmark, subset, value)] = _judge_cell(base, values[0.0], values.get(value, {}), direction, settings)
    states = effective_states(
        [CellView(c.multiplier_value, c.done, c.state) for c in judged.values()], str(settings.get("goal") or "curves")
    )
    for ident, cell in list(judged.items()):
        if states.get(cell.multiplier_value) == BEYOND_HARMFUL:
            judged[ident] = AdaptiveCell(
                **{**cell.__dict__, "state": BEYOND_HARMFUL, "reason": REASONS[BEYOND_HARMFUL]}
            )
    return judged


def _judge_cell(
    base: dict[str, Any], baseline: dict[str, float], other: dict[str, float], direction: str, settings: dict[str, Any]
) -> AdaptiveCell:
    benchmark, subset = base["benchmark"], base["subset"]
    seed = int(settings.get("seed") or 0)
    ids = sorted(set(baseline) & set(other), key=lambda i: order_key(seed, benchmark, subset, i))
    harm = paired_harm({i: baseline[i] for i in ids}, {i: other[i] for i in ids}, direction)
    population, done = base["population"], base["done"]
    n = len(harm)
    mean = float(harm.mean()) if n else math.nan
    if n and not in_unit_range(np.array([baseline[i] for i in ids] + [other[i] for i in ids])):
        state = EXHAUSTED if population is not None and done >= population else OPEN
        return AdaptiveCell(
            state=state, n_pairs=n, harm=mean, reason="per-sample values outside [0, 1]: no confidence sequence", **base
        )
    margin, precision, alpha = float(settings["margin"]), float(settings["precision"]), float(settings["alpha"])
    # i.i.d. draws (population None): the report's estimand, so an exhausted cell is judged there
    # exactly as a full sweep's (results.confseq)
    sequence = confidence_sequence(to_unit(np.clip(harm, -1, 1)), None, alpha, threshold=(margin + 1) / 2)
    low, high = from_unit(sequence.low), from_unit(sequence.high)
    crossings = [(t, s) for t, s in ((sequence.below_at, NON_INFERIOR), (sequence.above_at, HARMFUL)) if t is not None]
    decided_after = None
    if crossings:
        decided_after, state = min(crossings)
        low, high = decided_interval(state, low, high, margin)
    elif population is not None and done >= population:
        state = EXHAUSTED
    elif n and high - low <= precision:
        state = PRECISE
    else:
        state = OPEN
    return AdaptiveCell(
        state=state,
        n_pairs=n,
        harm=mean,
        low=low,
        high=high,
        decided_after=decided_after,
        reason=REASONS[state],
        **base,
    )


def decided_interval(state: str, low: float, high: float, margin: float) -> tuple[float, float]:
    """The interval shown for a decided cell: today's, cut at the margin on the side the decision
    proved. When the call was made the whole interval lay beyond the margin, and an intersection
    of a confidence sequence's intervals is as valid as each (WSR 2023), so this stays anytime-valid;
    today's interval alone can reach back over the margin (the capital may fall after the call)."""
    if state == HARMFUL:
        return max(low, margin), max(high, margin)
    if state == NON_INFERIOR:
        return min(low, margin), min(high, margin)
    return low, high


# ---------------------------------------------------------------- one aggregate row per adaptive cell

ADAPTIVE_COLUMNS = [
    "adaptive_state",
    "adaptive_samples",
    "adaptive_population",
    "adaptive_harm",
    "adaptive_low",
    "adaptive_high",
    "adaptive_alpha",
    "adaptive_margin",
    "adaptive_reason",
    "batch_logs",
]
_NOT_MERGED = {
    "benchmark",
    "subset",
    "multiplier",
    "category",
    "n_samples",
    "status",
    "completed_samples",
    "eval_name",
    "task_version",
    "model",
    "log_file",
    "started_at",
    "completed_at",
    "total_tokens",
}


def merged_rows(headers: Sequence[LogHeader]) -> list[dict[str, Any]]:
    """One CSV row per adaptive cell, its successful batches merged: sample counts and tokens add
    up, each metric is the sample-weighted mean of its batches' (the mean over the merged samples),
    and the stderr columns are left empty (the report computes intervals from the merged samples).
    The cell's state and anytime-valid interval go in the adaptive_* columns; log_file is its
    latest batch (for the health sidecar), batch_logs all of them, ';'-separated."""
    study = judge("", headers)
    by_log = {str(h.row["log_file"]): h for h in headers}
    latest: dict[Ident, LogHeader] = {}
    for h in sorted(headers, key=lambda h: h.created):
        if h.adaptive:
            latest[(h.benchmark, h.subset, multiplier_sort_key(h.multiplier))] = h
    rows = []
    for ident, cell in study.cells.items():
        used = [by_log[f].row for f in cell.log_files]
        row = _merge(used) if used else dict(latest[ident].row)
        row.update(
            {
                "adaptive_state": cell.state,
                "adaptive_samples": cell.done,
                "adaptive_population": cell.population,
                "adaptive_harm": _number(cell.harm),
                "adaptive_low": _number(cell.low),
                "adaptive_high": _number(cell.high),
                "adaptive_alpha": study.settings.get("alpha"),
                "adaptive_margin": study.settings.get("margin"),
                "adaptive_reason": cell.reason,
                "batch_logs": ";".join(cell.log_files),
            }
        )
        rows.append(row)
    return rows


def _merge(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    weights = [float(r.get("completed_samples") or 0) for r in rows]
    total = math.fsum(weights)
    merged = dict(rows[-1])
    for column in {c for r in rows for c in r} - _NOT_MERGED:
        values: list[Any] = [r.get(column) for r in rows]
        if "stderr" in column:
            merged[column] = None
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and total:
            merged[column] = math.fsum(w * float(v) for w, v in zip(weights, values)) / total
    merged["n_samples"] = sum(int(r.get("n_samples") or 0) for r in rows)
    merged["completed_samples"] = sum(int(r.get("completed_samples") or 0) for r in rows)
    merged["total_tokens"] = sum(int(r.get("total_tokens") or 0) for r in rows)
    merged["started_at"] = min(str(r.get("started_at") or "") for r in rows)
    merged["completed_at"] = max(str(r.get("completed_at") or "") for r in rows)
    merged["status"] = "success"
    return merged


def merge_health(batch_rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The output-health columns of a cell from its batches' (each weighted by its samples)."""
    from .health import HEALTH_COLUMNS

    merged: dict[str, float | None] = {}
    for column in HEALTH_COLUMNS:
        raw: list[tuple[float, Any]] = [(float(r.get("completed_samples") or 0), r.get(column)) for r in batch_rows]
        pairs = [(w, float(v)) for w, v in raw if isinstance(v, (int, float)) and math.isfinite(float(v))]
        total = sum(w for w, _ in pairs)
        merged[column] = sum(w * v for w, v in pairs) / total if pairs and total else None
    return merged


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value
