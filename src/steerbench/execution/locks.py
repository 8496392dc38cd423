"""One run per multiplier per log root, and one run per cell: no cell is ever run twice at once.

Separate multipliers (one `screen` each) may run side by side, the same multiplier may not.
Shards (`--shard i/n`) of one multiplier hold different cells, so they may run side by side
(for example as a Slurm job array on a shared filesystem); the same shard twice, or an
unsharded run next to a shard, is refused whole. Those multiplier locks also tell `status`
which multipliers are running.

Shards of *different* splits (shard 1/2 beside shard 1/1, an array 1-2 beside one of 1-3) may
hold the same cells, so each cell has a lock of its own too, taken without waiting just before
the eval set of its log folder and held until that eval set ends: a cell another run holds is
left out of this run's eval set and reported (`skip: ... re-run to pick it up`). A cell taken
after another run finished it is not run again: the eval set reads the folder's logs after
the locks are taken, and reuses a complete log.

Locks are flock(2) locks on files under `<log root>/.steerbench-locks/`; on a shared
filesystem they need flock to work across machines (NFSv4 does; Lustre only when mounted
with `-o flock`). Object stores (S3) have no locks: there nothing is excluded, so use one
shard count per log root and never start the same shard twice at once.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from ..core.config import Multiplier
from ..core.paths import is_remote

LOCK_FOLDER = ".steerbench-locks"
CELL_LOCKS = "cells"  # <LOCK_FOLDER>/cells/<hash of the cell's key>.lock
# flock not supported where the log root is (Lustre without -o flock, some NFS setups)
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


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
    except OSError as e:
        handle.close()
        raise _no_flock(path, e) from None
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


def _no_flock(path: Path, error: OSError) -> Exception:
    if error.errno in NO_FLOCK:
        return RunLockedError(
            f"cannot lock {path}: {error.strerror}; the log root's filesystem must support flock "
            "(NFSv4 does; Lustre needs the flock mount option), or use an S3 log root (no locks)"
        )
    return error


# ---------------------------------------------------------------- one run per cell


def cell_lock_path(log_root: str, key: str) -> Path:
    """The lock file of the cell whose `Cell.key` is `key` (benchmark, subset, multiplier value)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(log_root) / LOCK_FOLDER / CELL_LOCKS / f"{digest}.lock"


class HeldCells:
    """The cells of one eval set whose locks this process took (`cells`), and those another
    run holds (`skipped`: the cell and the line saying so). Release when the eval set ends."""

    def __init__(self) -> None:
        self.cells: list[Any] = []
        self.skipped: list[tuple[Any, str]] = []
        self._handles: list[IO[str]] = []

    def release(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()


def take_cells(log_root: str, cells: Sequence[Any]) -> HeldCells:
    """Lock every cell (a steerbench.core.plan.Cell) that no other run holds, without waiting.

    A remote log root has no locks: every cell is returned as taken.
    """
    held = HeldCells()
    if is_remote(log_root):
        held.cells = list(cells)
        return held
    import fcntl

    for cell in cells:
        path = cell_lock_path(log_root, cell.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            held.skipped.append((cell, skip_line(cell, path)))
            continue
        except OSError as e:
            handle.close()
            held.release()
            raise _no_flock(path, e) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {socket.gethostname()} {cell.key}")
        handle.flush()
        held._handles.append(handle)
        held.cells.append(cell)
    return held


def skip_line(cell: Any, path: Path) -> str:
    """`skip: EchoB m=1 is being run by pid 123 on host; re-run to pick it up`."""
    pid: int | None = _holder(path, _held_flocks())  # this machine: the live holder
    host: str | None = socket.gethostname() if pid is not None else None
    if pid is None:  # held from another machine: who last wrote the file
        pid, host = _recorded(path)
    return (
        f"skip: {cell.label} m={cell.multiplier.label} is being run by pid {pid or 'unknown'} "
        f"on {host or 'an unknown host'}; re-run to pick it up"
    )


Run = TypeVar("Run", bound=Callable[..., list[Any]])


def one_run_per_cell(skipped: Callable[[Any, str], Any]) -> Callable[[Run], Run]:
    """Decorates `run_folder(job, model, folder, cells, ...)` (execution.run): the cells are
    locked just before it runs them and released when it returns; cells another run holds are
    left out, each reported by `skipped(cell, line)` ahead of the outcomes of the others."""

    def decorate(run_folder: Run) -> Run:
        @functools.wraps(run_folder)
        def locked(job: Any, model: Any, folder: str, cells: list[Any], *args: Any, **kwargs: Any) -> list[Any]:
            held = take_cells(job.log_root, cells)
            try:
                ran = run_folder(job, model, folder, held.cells, *args, **kwargs) if held.cells else []
            finally:
                held.release()
            return [skipped(cell, line) for cell, line in held.skipped] + ran

        return locked  # type: ignore[return-value]

    return decorate


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
