"""Where a study stands: benchmark rows x multiplier columns, from log headers only.

Reading headers only (never samples) keeps this fast on a grid of large logs, local or
on S3. A cell is done, partial, failed, running or missing:

- done: the latest successful log completed every sample;
- partial: a successful log with samples that errored, or a cancelled log (completed/total);
- failed: an error log (with its first line), or a log left "started" by a run that is gone;
- running: a log whose eval is in progress. On a local log root that means its multiplier's
  lock is held by a live process; object stores have no locks, so there every "started"
  log counts as running (a run that was killed shows as running until it is resumed).
  Its count (`running 123/14042`), rate and ETA come from the progress files its worker
  keeps beside the logs (steerbench.logs.progress; local and shared filesystems);
- missing: planned in deployments.jsonl x benchmarks.jsonl, but no log yet.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..core.cells import CellKey, multiplier_sort_key
from ..execution.locks import running_multipliers
from ..logs.progress import CellProgress, by_cell, read_all_progress
from .aggregate import LogHeader, pick_latest, read_headers

STATES = ("done", "partial", "failed", "running", "missing")
INTERRUPTED = "interrupted: the run stopped before this eval finished (run the same command again to resume)"


@dataclass(frozen=True)
class CellStatus:
    benchmark: str
    subset: str
    category: str
    multiplier: str
    state: str  # one of STATES
    completed_samples: int
    total_samples: int
    error: str | None = None
    log_file: str | None = None
    # a running cell, from its progress files (None where there are none, e.g. on object stores)
    done: int | None = None
    rate: float | None = None  # samples per second
    eta_seconds: float | None = None
    errors: int = 0  # samples that ended in error so far
    retries: int = 0
    first_error: str | None = None
    # an adaptive study's cell (results.adaptive): its state, samples used of the benchmark's, interval
    adaptive_state: str | None = None
    adaptive_samples: int | None = None
    adaptive_population: int | None = None
    adaptive_low: float | None = None  # the anytime-valid interval of the mean paired harm
    adaptive_high: float | None = None
    adaptive_reason: str | None = None

    @property
    def key(self) -> CellKey:
        return CellKey(self.benchmark, self.subset, self.multiplier, self.category)

    @property
    def row_label(self) -> str:
        return self.key.label

    @property
    def short(self) -> str:
        """What the grid shows for this cell."""
        if self.state == "partial":
            return f"partial {self.completed_samples}/{self.total_samples}" if self.total_samples else "partial"
        if self.state == "running" and self.done is not None:
            return f"running {self.done}/{self.total_samples}"
        if self.state == "done" and self.adaptive_state is not None:
            return f"{self.adaptive_state} {self.adaptive_samples}/{self.adaptive_population or '?'}"
        return {"failed": "FAILED", "missing": "-"}.get(self.state, self.state)


@dataclass(frozen=True)
class StudyStatus:
    log_root: str
    multipliers: list[str]  # grid columns, in numeric order
    rows: list[tuple[str, str, str]]  # grid rows: (benchmark, subset, category)
    cells: list[CellStatus]
    skipped: list[str] = field(default_factory=list)  # unreadable logs, with reasons
    running_from_locks: bool = True  # False on object stores: "running" is only a log's status
    lock_holders: dict[str, str] = field(default_factory=dict)  # multiplier label -> "pid 123"

    def counts(self) -> dict[str, int]:
        return {state: sum(1 for c in self.cells if c.state == state) for state in STATES}

    def to_json(self) -> dict[str, Any]:
        return {
            "log_root": self.log_root,
            "multipliers": self.multipliers,
            "counts": self.counts(),
            "running_detection": "locks" if self.running_from_locks else "log status only",
            "lock_holders": self.lock_holders,
            "cells": [asdict(c) for c in self.cells],
            "skipped": self.skipped,
        }


def classify(header: LogHeader, running: dict[str, str] | None) -> tuple[str, str | None]:
    """(state, error line) of a cell from its chosen log header."""
    completed = int(header.row.get("completed_samples") or 0)
    total = int(header.row.get("n_samples") or 0)
    if header.status == "success":
        return ("done" if completed >= total else "partial"), None
    if header.status == "cancelled":
        return "partial", None
    if header.status == "started":
        if running is None or _is_running(header.multiplier, running):
            return "running", None
        return "failed", INTERRUPTED
    return "failed", header.error or header.status


def with_progress(cell: CellStatus, progress: CellProgress, now: float | None = None) -> CellStatus:
    """A running cell with the counts of its progress files (samples done, rate and ETA as of `now`,
    the wall clock when not given, trouble)."""
    now = time.time() if now is None else now
    return replace(
        cell,
        done=progress.done,
        total_samples=progress.total or cell.total_samples,
        rate=progress.rate_at(now),
        eta_seconds=progress.eta_at(now),
        errors=progress.errors,
        retries=progress.retries,
        first_error=progress.first_error,
    )


def _is_running(multiplier: str, running: dict[str, str]) -> bool:
    value = multiplier_sort_key(multiplier)
    return any(multiplier_sort_key(label) == value for label in running)


def study_status(log_root: str, planned: list[CellKey] | None = None) -> StudyStatus:
    """planned: every cell that should exist (steerbench.core.plan.planned_cells)."""
    headers, skipped = read_headers(log_root)
    chosen = pick_latest(headers)
    running = running_multipliers(log_root)
    progress = by_cell(read_all_progress(log_root))
    cells: dict[tuple[str, str, float], CellStatus] = {}
    labels: dict[float, str] = {}
    order: list[tuple[str, str, str]] = []
    for cell in planned or []:
        labels.setdefault(multiplier_sort_key(cell.multiplier), cell.multiplier)
        if (cell.benchmark, cell.subset, cell.category) not in order:
            order.append((cell.benchmark, cell.subset, cell.category))
    for key, header in chosen.items():
        state, error = classify(header, running)
        labels.setdefault(key[2], header.multiplier)
        cells[key] = CellStatus(
            benchmark=header.benchmark,
            subset=header.subset,
            category=header.category,
            multiplier=labels[key[2]],
            state=state,
            completed_samples=int(header.row.get("completed_samples") or 0),
            total_samples=int(header.row.get("n_samples") or 0),
            error=error,
            log_file=header.row.get("log_file"),
        )
        if state == "running" and key in progress:
            cells[key] = with_progress(cells[key], progress[key])
    adaptive = [h for h in headers if h.adaptive]
    if adaptive:  # reads the batches' sample scores: a state needs them
        cells.update(with_adaptive_states(cells, adaptive))
    for cell in planned or []:
        if cell.ident not in cells:
            cells[cell.ident] = CellStatus(cell.benchmark, cell.subset, cell.category, cell.multiplier, "missing", 0, 0)
    # rows in benchmarks.jsonl order, then any benchmark found only in the logs
    extra_rows = sorted(
        {(c.benchmark, c.subset, c.category) for c in cells.values()} - set(order), key=lambda r: (r[2], r[0], r[1])
    )
    rows = order + extra_rows
    row_index = {row[:2]: i for i, row in enumerate(rows)}
    ordered = sorted(
        cells.values(), key=lambda c: (row_index[(c.benchmark, c.subset)], multiplier_sort_key(c.multiplier))
    )
    columns = [labels[v] for v in sorted(labels)]
    return StudyStatus(log_root, columns, rows, ordered, skipped, running is not None, running or {})


def with_adaptive_states(
    cells: dict[tuple[str, str, float], CellStatus], headers: list[LogHeader]
) -> dict[tuple[str, str, float], CellStatus]:
    """The adaptive cells with their state, samples used and interval (results.adaptive.judge)."""
    from .adaptive import judge

    changed = {}
    for ident, judged in judge("", headers).cells.items():
        if ident not in cells:
            continue
        changed[ident] = replace(
            cells[ident],
            adaptive_state="baseline" if judged.multiplier_value == 0 else judged.state,
            adaptive_samples=judged.done,
            adaptive_population=judged.population,
            adaptive_low=None if math.isnan(judged.low) else judged.low,
            adaptive_high=None if math.isnan(judged.high) else judged.high,
            adaptive_reason=judged.reason,
        )
    return changed
