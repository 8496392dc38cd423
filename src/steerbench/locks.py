"""One run per multiplier per log root: a second `steerbench run` on the same cells is refused.

Inspect's eval sets are not safe against two processes writing one log folder; separate
multipliers (one `screen` each) may run side by side, the same multiplier may not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .config import Multiplier
from .paths import is_remote


class RunLockedError(Exception):
    """Another process is running the same multiplier on the same log root. Exit code 1."""


@contextlib.contextmanager
def multiplier_locks(log_root: str, multipliers: list[Multiplier]) -> Iterator[None]:
    """Hold an exclusive lock per multiplier for the duration of a run (local log roots only)."""
    if is_remote(log_root):
        yield  # object stores have no locks; shards must not overlap (see --shard)
        return
    import fcntl

    folder = Path(log_root) / ".steerbench-locks"
    folder.mkdir(parents=True, exist_ok=True)
    handles = []
    try:
        for multiplier in multipliers:
            path = folder / f"{multiplier.folder}.lock"
            handle = open(path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise RunLockedError(
                    f"another steerbench run (pid {holder}) is already running multiplier "
                    f"{multiplier.label} on {log_root}; wait for it to finish or stop it"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            handles.append(handle)
        yield
    finally:
        for handle in handles:
            handle.close()
