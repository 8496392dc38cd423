"""One run per multiplier per log root: a second `steerbench run` on the same cells is refused.

Separate multipliers (one `screen` each) may run side by side, the same multiplier may not.
Shards (`--shard i/n`) of one multiplier hold different cells, so they may run side by side
(for example as a Slurm job array on a shared filesystem); the same shard twice, or an
unsharded run next to a shard, may not.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..core.config import Multiplier
from ..core.paths import is_remote

LOCK_FOLDER = ".steerbench-locks"


class RunLockedError(Exception):
    """Another process is running the same multiplier on the same log root. Exit code 1."""


def _lock_paths(folder: Path, multiplier: Multiplier, shard: tuple[int, int] | None) -> tuple[Path, Path | None]:
    """The multiplier's lock, and the shard's own lock when running a shard."""
    base = folder / f"{multiplier.folder}.lock"
    if shard is None:
        return base, None
    return base, folder / f"{multiplier.folder}.shard-{shard[0]}-of-{shard[1]}.lock"


def _take(path: Path, exclusive: bool, what: str, log_root: str) -> IO[str]:
    import fcntl

    handle = open(path, "a+")
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        holder = _holder(path, _held_flocks()) or "unknown"
        raise RunLockedError(
            f"another steerbench run (pid {holder}) is already running {what} on {log_root}; "
            "wait for it to finish or stop it"
        ) from None
    if exclusive:  # only the sole holder records who it is
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {socket.gethostname()}")
        handle.flush()
    return handle


@contextlib.contextmanager
def multiplier_locks(
    log_root: str, multipliers: list[Multiplier], shard: tuple[int, int] | None = None
) -> Iterator[None]:
    """Hold a lock per multiplier for the duration of a run (local log roots only).

    Unsharded: the multiplier's lock, exclusively. Shard i/n: the multiplier's lock shared
    (so an unsharded run of it is refused) and the shard's own lock exclusively.
    """
    if is_remote(log_root):
        yield  # object stores have no locks; shards must not overlap (see --shard)
        return
    folder = Path(log_root) / LOCK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    handles: list[IO[str]] = []
    try:
        for multiplier in multipliers:
            base, own = _lock_paths(folder, multiplier, shard)
            what = f"multiplier {multiplier.label}"
            handles.append(_take(base, own is None, what, log_root))
            if own is not None and shard is not None:
                handles.append(_take(own, True, f"{what} shard {shard[0]}/{shard[1]}", log_root))
        yield
    finally:
        for handle in handles:
            handle.close()


# ---------------------------------------------------------------- who is running


def running_multipliers(log_root: str) -> dict[str, str] | None:
    """Multiplier labels whose lock is held right now, with who holds it ("pid 123").

    None for a remote log root, where there are no locks to ask. Asking never takes a
    lock, so it cannot make a run that is just starting fail. A lock last taken on another
    machine (a shared filesystem) cannot be checked from here, so it counts as held.
    """
    if is_remote(log_root):
        return None
    folder = Path(log_root) / LOCK_FOLDER
    if not folder.is_dir():
        return {}
    held = _held_flocks()
    here = socket.gethostname()
    running: dict[str, str] = {}
    for path in sorted(folder.glob("multiplier_*.lock")):
        label = path.name.removeprefix("multiplier_").removesuffix(".lock").split(".shard-")[0]
        pid, host = _recorded(path)
        if host is not None and host != here:
            running.setdefault(label, f"pid {pid} on {host} (another machine: not checked)")
            continue
        holder = _holder(path, held)
        if holder is not None:
            running.setdefault(label, f"pid {holder}")
    return running


def _recorded(path: Path) -> tuple[int | None, str | None]:
    """The pid and host written by the lock's last exclusive holder."""
    try:
        parts = path.read_text().split()
    except OSError:
        return None, None
    pid = int(parts[0]) if parts and parts[0].isdigit() else None
    return pid, (parts[1] if len(parts) > 1 else None)


def _held_flocks() -> dict[tuple[int, int, int], int] | None:
    """(major, minor, inode) -> pid of every flock held on this machine (Linux), or None."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    held = {}
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (waiters: "1: -> FLOCK ...", skipped)
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or not fields[4].isdigit():
            continue
        try:
            major, minor, inode = fields[5].split(":")
            held[(int(major, 16), int(minor, 16), int(inode))] = int(fields[4])
        except ValueError:
            continue
    return held


def _holder(path: Path, held: dict[tuple[int, int, int], int] | None) -> int | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    if held is not None:
        return held.get((os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino))
    # no /proc/locks (macOS): the pid recorded by the last exclusive holder is still alive
    pid, _ = _recorded(path)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        return pid  # alive, owned by another user
    except OSError:
        return None
    return pid
