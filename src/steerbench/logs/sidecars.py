"""Reading and writing the small text files steerbench keeps next to a log, locally or on an object store.

A sidecar is named after its log (`<log>.eval` + a suffix, see results/health.py) so that it
travels with the log folder. Reads never raise for a sidecar that is not there: logs written
before steerbench kept one simply have none.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

READ_THREADS = 8


def _local(location: str) -> str | None:
    if location.startswith("file://"):
        return location[len("file://") :]
    return None if "://" in location else location


def write_text(location: str, text: str) -> None:
    """Write `text` to `location`: locally by an atomic rename (a reader never sees half a file)."""
    path = _local(location)
    if path is None:
        from ..boundary.filesystem import filesystem

        with filesystem(location).fs.open(location, "w") as f:
            f.write(text)
        return
    folder = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read(location: str, first_line_only: bool) -> str | None:
    try:
        path = _local(location)
        if path is None:
            from ..boundary.filesystem import filesystem

            with filesystem(location).fs.open(location, "rb") as f:
                return (f.readline() if first_line_only else f.read()).decode("utf-8")
        with open(path, encoding="utf-8") as f:
            return f.readline() if first_line_only else f.read()
    except Exception:  # missing, unreadable, or an object store's own error: no sidecar
        return None


def read_first_line(location: str) -> str | None:
    """The file's first line, or None when there is no such file (or it cannot be read)."""
    return _read(location, first_line_only=True)


def read_text(location: str) -> str | None:
    """The whole file, or None when there is no such file (or it cannot be read)."""
    return _read(location, first_line_only=False)


def read_first_lines(locations: list[str]) -> list[str | None]:
    """`read_first_line` of each, in parallel threads (remote reads are mostly waiting)."""
    if len(locations) <= 1 or all(_local(loc) is not None for loc in locations):
        return [read_first_line(loc) for loc in locations]
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        return list(pool.map(read_first_line, locations))
