"""Progress files: where each running cell stands, written by the worker running it, read by run and status.

Each running cell has one progress file, `<log folder>/.steerbench-progress/<cell>.progress` (JSON),
rewritten atomically (steerbench.execution.progress) at most every second while the cell runs and
once more when it ends. `steerbench run` (its live view and plain progress lines) and `steerbench
status` (from any process, or another machine on a shared log root) read these files and nothing
else, never the logs' samples. Object stores have none.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..core.cells import cell_label, multiplier_sort_key

PROGRESS_FOLDER = ".steerbench-progress"
SUFFIX = ".progress"


@dataclass(frozen=True)
class CellProgress:
    """Where one running (or just finished) cell stands, as its progress file says."""

    benchmark: str
    subset: str
    category: str
    multiplier: str
    total: int  # samples x epochs this eval runs
    done: int  # finished samples (errored ones included)
    errors: int = 0  # samples that ended in error
    retries: int = 0  # request retries and sample retries
    first_error: str | None = None  # keys masked
    started: float = 0.0  # wall clock (time.time()) when the cell started in this run
    updated: float = 0.0
    done_at_start: int = 0  # samples already done when this run started the cell
    finished: bool = False
    pid: int = 0
    host: str = ""

    @property
    def label(self) -> str:
        return cell_label(self.benchmark, self.subset)

    @property
    def ident(self) -> tuple[str, str, float]:
        return self.benchmark, self.subset, multiplier_sort_key(self.multiplier)

    @property
    def rate(self) -> float | None:
        """Samples per second in this run up to the file's last update; None until there is something to measure."""
        return self.rate_at(None)

    @property
    def eta_seconds(self) -> float | None:
        return self.eta_at(None)

    def rate_at(self, now: float | None) -> float | None:
        """Samples per second in this run up to `now` (wall clock) for a running cell: the time since
        its last finished sample counts too, so that a slow cell's rate and ETA move between samples
        instead of freezing at the last one's values. A finished cell, or now=None, ends at `updated`."""
        end = self.updated if now is None or self.finished else max(now, self.updated)
        elapsed = end - self.started
        counted = self.done - self.done_at_start
        return counted / elapsed if elapsed > 0 and counted > 0 else None

    def eta_at(self, now: float | None) -> float | None:
        """Seconds left at `rate_at(now)`; None while there is no rate."""
        rate = self.rate_at(now)
        if rate is None or self.total <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate, "eta_seconds": self.eta_seconds}


def progress_folder(log_dir: str | Path) -> Path:
    return Path(str(log_dir).removeprefix("file://")) / PROGRESS_FOLDER


def progress_name(benchmark: str, subset: str, shard: tuple[int, int] | None = None) -> str:
    """The file name of a cell's progress (a folder holds one multiplier of one category)."""
    label = cell_label(benchmark, subset)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    digest = hashlib.blake2b(label.encode(), digest_size=4).hexdigest()  # labels that differ only in unsafe characters
    shard_part = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
    return f"{safe}-{digest}{shard_part}{SUFFIX}"


def read_progress(path: Path) -> CellProgress | None:
    try:
        data = json.loads(path.read_text())
        known = {f for f in CellProgress.__dataclass_fields__}
        return CellProgress(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None  # being replaced, or not ours


def read_all_progress(log_root: str) -> list[CellProgress]:
    """Every progress file under a local log root (`<category>/multiplier_<m>/.steerbench-progress/`)."""
    if "://" in log_root and not log_root.startswith("file://"):
        return []  # object stores: no progress files (status shows "running" without counts)
    root = Path(log_root.removeprefix("file://"))
    if not root.is_dir():
        return []
    found = []
    for path in root.glob(f"*/multiplier_*/{PROGRESS_FOLDER}/*{SUFFIX}"):
        progress = read_progress(path)
        if progress is not None:
            found.append(progress)
    return found


def combine(parts: list[CellProgress]) -> CellProgress:
    """One cell's progress from its shards' files (shards of a multiplier share a folder)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    errors = [p.first_error for p in parts if p.first_error]
    return replace(
        first,
        total=sum(p.total for p in parts),
        done=sum(p.done for p in parts),
        errors=sum(p.errors for p in parts),
        retries=sum(p.retries for p in parts),
        first_error=errors[0] if errors else None,
        started=min(p.started for p in parts),
        updated=max(p.updated for p in parts),
        done_at_start=sum(p.done_at_start for p in parts),
        finished=all(p.finished for p in parts),
    )


def by_cell(progress: list[CellProgress]) -> dict[tuple[str, str, float], CellProgress]:
    groups: dict[tuple[str, str, float], list[CellProgress]] = {}
    for p in progress:
        groups.setdefault(p.ident, []).append(p)
    return {ident: combine(parts) for ident, parts in groups.items()}


def write_progress(path: Path, progress: CellProgress) -> None:
    """Replace a progress file at once (readers see the old or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(progress)))
    os.replace(tmp, path)


def folder_progress(log_dir: str | Path) -> list[CellProgress]:
    """The progress files of one log folder."""
    folder = progress_folder(log_dir)
    if not folder.is_dir():
        return []
    return [p for p in (read_progress(path) for path in sorted(folder.glob(f"*{SUFFIX}"))) if p is not None]
