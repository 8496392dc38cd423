"""Where a study stands: benchmark rows x multiplier columns, from log headers only.

Reading headers only (never samples) keeps this fast on a grid of large logs, local or
on S3. A cell is done, partial, failed, running or missing:

- done: the latest successful log completed every sample;
- partial: a successful log with samples that errored, or a cancelled log (completed/total);
- failed: an error log (with its first line), or a log left "started" by a run that is gone;
- running: a log whose eval is in progress. On a local log root that means its multiplier's
  lock is held by a live process; object stores have no locks, so there every "started"
  log counts as running (a run that was killed shows as running until it is resumed);
- missing: planned in deployments.jsonl x benchmarks.jsonl, but no log yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .aggregate import LogHeader, multiplier_sort_key, pick_latest, read_headers
from .locks import running_multipliers

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

    @property
    def row_label(self) -> str:
        return f"{self.benchmark}[{self.subset}]" if self.subset else self.benchmark

    @property
    def short(self) -> str:
        """What the grid shows for this cell."""
        if self.state == "partial":
            return f"partial {self.completed_samples}/{self.total_samples}" if self.total_samples else "partial"
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


def _is_running(multiplier: str, running: dict[str, str]) -> bool:
    value = multiplier_sort_key(multiplier)
    return any(multiplier_sort_key(label) == value for label in running)


def study_status(log_root: str, planned: list[tuple[str, str, str, str]] | None = None) -> StudyStatus:
    """planned: (benchmark, subset, multiplier label, category) of every cell that should exist."""
    headers, skipped = read_headers(log_root)
    chosen = pick_latest(headers)
    running = running_multipliers(log_root)
    cells: dict[tuple[str, str, float], CellStatus] = {}
    labels: dict[float, str] = {}
    order: list[tuple[str, str, str]] = []
    for benchmark, subset, multiplier, category in planned or []:
        labels.setdefault(multiplier_sort_key(multiplier), multiplier)
        if (benchmark, subset, category) not in order:
            order.append((benchmark, subset, category))
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
    for benchmark, subset, multiplier, category in planned or []:
        key = (benchmark, subset, multiplier_sort_key(multiplier))
        if key not in cells:
            cells[key] = CellStatus(benchmark, subset, category, multiplier, "missing", 0, 0)
    # rows in benchmarks.jsonl order, then any benchmark found only in the logs
    extra_rows = sorted({(c.benchmark, c.subset, c.category) for c in cells.values()} - set(order),
                        key=lambda r: (r[2], r[0], r[1]))
    rows = order + extra_rows
    row_index = {row[:2]: i for i, row in enumerate(rows)}
    ordered = sorted(cells.values(), key=lambda c: (row_index[(c.benchmark, c.subset)], multiplier_sort_key(c.multiplier)))
    columns = [labels[v] for v in sorted(labels)]
    return StudyStatus(log_root, columns, rows, ordered, skipped, running is not None, running or {})


# ---------------------------------------------------------------- printing


def format_grid(status: StudyStatus) -> list[str]:
    """The grid as text lines: one row per benchmark (subset), one column per multiplier."""
    row_labels = [f"{b}[{s}]" if s else b for b, s, _ in status.rows]
    first = max([len("benchmark"), *map(len, row_labels)])
    texts = {(c.benchmark, c.subset, multiplier_sort_key(c.multiplier)): c.short for c in status.cells}
    width = max([6, *(len(m) for m in status.multipliers), *(len(t) for t in texts.values())])
    lines = [f"{'benchmark':<{first}}  " + "  ".join(f"{m:>{width}}" for m in status.multipliers)]
    for (benchmark, subset, _), label in zip(status.rows, row_labels):
        values = [texts.get((benchmark, subset, multiplier_sort_key(m)), "") for m in status.multipliers]
        lines.append(f"{label:<{first}}  " + "  ".join(f"{v:>{width}}" for v in values))
    return lines


def print_status(status: StudyStatus, out: Callable[[str], None]) -> None:
    out(f"log root: {status.log_root}")
    if not status.cells:
        out("no logs and no planned cells (is this the right --log-root, with deployments.jsonl and benchmarks.jsonl here?)")
        return
    for line in format_grid(status):
        out(line)
    counts = status.counts()
    out("")
    out(f"{len(status.cells)} cell(s): " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    for cell in status.cells:
        if cell.state == "failed":
            out(f"failed: {cell.row_label} at multiplier {cell.multiplier}: {cell.error}")
    if not status.running_from_locks and counts["running"]:
        out("note: object stores have no locks, so a run that was killed also shows as running until it is resumed")
    for reason in status.skipped:
        out(f"warning: skipped unreadable log {reason}")
