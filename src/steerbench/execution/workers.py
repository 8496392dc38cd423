"""Worker processes for `steerbench run`: how many, and how they start.

Inspect allows one eval at a time per process, so an endpoint is only kept busy while a
process is working on it: by default every multiplier gets its own worker, and all
endpoints are driven at once (the operating system shares the cores between them).
Where workers cannot be forked (not Linux, or other threads running, as in `steerbench
demo` with its in-process simulator), the default stays one worker per core.

Starting a worker used to cost ~5 s of CPU each (spawn, then importing inspect_ai,
the inspect_evals registry, the OpenAI and Anthropic SDKs). On Linux the parent imports
them once (steerbench.boundary.warmup), tunes the garbage collector, and forks its
workers, which inherit both.
Measurements: bench/README.md.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import Any

from ..boundary.warmup import preload_inspect

# Above this many multipliers, workers take turns (memory: ~150-250 MB per worker).
MAX_DEFAULT_WORKERS = 32


def can_fork() -> bool:
    """Linux, and no other thread running here (a fork copies locks another thread may hold)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def default_workers(jobs: int, forking: bool | None = None) -> int:
    """One worker per multiplier, so that every endpoint is busy at the same time; where
    workers must be spawned (~5 s of CPU each to start), one per core as before."""
    if forking if forking is not None else can_fork():
        return max(1, min(jobs, MAX_DEFAULT_WORKERS))
    return max(1, min(jobs, os.cpu_count() or 1))


# Inspect allocates many short-lived objects per sample; with Python's default threshold
# (a collection every 700 allocations) the cyclic garbage collector took 3.4-4 ms of the
# ~21 ms of CPU per sample (bench of 1000 instant samples, realtime logging on); with this
# threshold, and the imported modules frozen out of collections, 0.8 ms.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect less often, and never scan what is already imported (it lives until exit)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def worker_context() -> Any:
    """A multiprocessing context whose workers start without re-importing Inspect.

    Linux: fork, after preloading. Only from a process with no other thread running (as
    `steerbench run` is once preflight's threads have finished): a fork copies locks that
    another thread may hold. Otherwise, and on other systems, spawn.
    """
    import multiprocessing as mp

    if can_fork():
        preload_inspect()
        tune_gc()  # forked workers inherit it
        return mp.get_context("fork")
    return mp.get_context("spawn")
