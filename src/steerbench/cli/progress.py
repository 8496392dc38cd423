"""What `steerbench run` shows while it runs: a live view in a terminal, plain progress lines elsewhere, or nothing."""

from __future__ import annotations

import sys
import threading
from typing import Any

from ..execution.progress import RunMonitor
from ..logs.progress import CellProgress
from .output import progress_line, say

# above this many running cells the live view shows one line per multiplier
MAX_CELL_ROWS = 16


class QuietMonitor(RunMonitor):
    """--quiet: nothing until the final summary."""

    poll_seconds = 3600.0

    def line(self, text: str) -> None:
        pass


class PlainMonitor(RunMonitor):
    """Not a terminal (screen logs, Slurm .out, CI): the workers' lines as they come, and for each
    running cell at most one progress line every `every` seconds."""

    def __init__(self, every: float, out: Any = say):
        self.every = every
        self.out = out
        self.poll_seconds = min(max(every / 4, 0.25), 5.0)
        self._printed: dict[tuple[str, str, float], float] = {}  # cell -> when its last line was printed
        self._last_line: dict[tuple[str, str, float], str] = {}  # cell -> that line
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self.out(text)

    def update(self, progress: list[CellProgress], now: float) -> None:
        with self._lock:
            for p in sorted(progress, key=lambda p: (p.ident[2], p.category, p.label)):
                if p.finished:
                    continue  # its worker says how it ended
                last = self._printed.setdefault(p.ident, p.started)
                if now - last < self.every:
                    continue
                line = progress_line(p, now)
                if line == self._last_line.get(p.ident):
                    continue  # nothing moved (a stalled cell whose rate is still unknown): say it once
                self._printed[p.ident], self._last_line[p.ident] = now, line
                self.out(line)


class LiveMonitor(RunMonitor):
    """A terminal: one line per running cell (per multiplier on a large grid) and a total line,
    redrawn in place with rich; the workers' lines print above it."""

    poll_seconds = 0.5

    def __init__(self, cells: int) -> None:
        self.cells = cells
        self.live: Any = None  # started on first use: its refresh thread must not exist before workers fork
        self._lock = threading.Lock()

    def _started(self) -> Any:
        if self.live is None:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=sys.stdout), refresh_per_second=4, transient=True)
            self.live.start()
        return self.live

    def line(self, text: str) -> None:
        with self._lock:
            self._started().console.print(text, markup=False, highlight=False)

    def update(self, progress: list[CellProgress], now: float) -> None:
        with self._lock:
            self._started().update(live_table(progress, self.cells, now))

    def close(self) -> None:
        with self._lock:
            if self.live is not None:
                self.live.stop()


def live_table(progress: list[CellProgress], planned_cells: int, now: float | None = None) -> Any:
    from rich.table import Table

    from .output import duration, rate_text

    table = Table(box=None, pad_edge=False, show_edge=False)
    for name, justify in (
        ("cell", "left"),
        ("multiplier", "right"),
        ("samples", "right"),
        ("rate", "right"),
        ("errors", "right"),
        ("retries", "right"),
        ("ETA", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    running = [p for p in progress if not p.finished]
    rows: list[tuple[str, str, list[CellProgress]]]
    if len(running) > MAX_CELL_ROWS:
        groups: dict[str, list[CellProgress]] = {}
        for p in running:
            groups.setdefault(p.multiplier, []).append(p)
        rows = [(f"{len(ps)} cells", m, ps) for m, ps in sorted(groups.items(), key=lambda g: g[1][0].ident[2])]
    else:
        rows = [(p.label, p.multiplier, [p]) for p in sorted(running, key=lambda p: (p.ident[2], p.category, p.label))]
    for label, multiplier, parts in rows:
        table.add_row(label, multiplier, *_columns(parts, duration, rate_text, now))
    finished = sum(1 for p in progress if p.finished)
    table.add_row(
        f"total: {finished} of {planned_cells} cells finished",
        "",
        *_columns(progress, duration, rate_text, now),
        style="bold",
    )
    errors = [p for p in running if p.first_error]
    for p in errors[:3]:
        table.add_row(f"  {p.label} at {p.multiplier}: {p.first_error}", "", "", "", "", "", "", style="red")
    return table


def _columns(parts: list[CellProgress], duration: Any, rate_text: Any, now: float | None) -> list[str]:
    done, total = sum(p.done for p in parts), sum(p.total for p in parts)
    rates = [rate for p in parts if not p.finished and (rate := p.rate_at(now)) is not None]
    rate = sum(rates) if rates else None
    remaining = sum(max(p.total - p.done, 0) for p in parts if not p.finished)
    eta = remaining / rate if rate else None
    return [
        f"{done}/{total}",
        rate_text(rate),
        str(sum(p.errors for p in parts)),
        str(sum(p.retries for p in parts)),
        duration(eta) if eta is not None else "-",
    ]


def make_monitor(quiet: bool, progress_every: float, cells: int) -> RunMonitor:
    if quiet:
        return QuietMonitor()
    if sys.stdout.isatty():
        return LiveMonitor(cells)
    return PlainMonitor(progress_every)
