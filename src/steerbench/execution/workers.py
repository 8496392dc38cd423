"""Worker processes for `steerbench run`: how many, and how they start.

Inspect allows one eval at a time per process, so an endpoint is only kept busy while a
process is working on it: by default every multiplier gets its own worker, and all
endpoints are driven at once (the operating system shares the cores between them).
Where workers cannot be forked (not Linux, or other threads running, as in `steerbench
demo` with its in-process simulator), the default stays one worker per core.

Starting a worker used to cost ~5 s of CPU each (spawn, then importing inspect_ai,
the inspect_evals registry, the OpenAI and Anthropic SDKs). On Linux the parent imports
them once, tunes the garbage collector, and forks its workers, which inherit both.
Measurements: bench/README.md.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import threading
from importlib.metadata import entry_points
from typing import Any

# Above this many multipliers, workers take turns (memory: ~150-250 MB per worker).
MAX_DEFAULT_WORKERS = 32

# What every worker imports before its first sample (measured on inspect-ai 0.3.285:
# inspect_ai 0.9 s, the OpenAI-compatible provider 0.4 s, Anthropic's 1 s, ACP and the
# control server 0.5 s).
PRELOAD_MODULES = (
    "inspect_ai",
    "inspect_ai.model",
    "inspect_ai.log",
    "inspect_ai.model._providers.openai_compatible",
    "inspect_ai.model._providers.anthropic",  # 1 s; every eval imports it (graders or not)
    # imported by every eval, on its first sample
    "inspect_ai.agent._acp.server",
    "inspect_ai._control.current_server",
)


def can_fork() -> bool:
    """Linux, and no other thread running here (a fork copies locks another thread may hold)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def default_workers(jobs: int, forking: bool | None = None) -> int:
    """One worker per multiplier, so that every endpoint is busy at the same time; where
    workers must be spawned (~5 s of CPU each to start), one per core as before."""
    if forking if forking is not None else can_fork():
        return max(1, min(jobs, MAX_DEFAULT_WORKERS))
    return max(1, min(jobs, os.cpu_count() or 1))


def preload_inspect() -> None:
    """Import in this process what every worker needs; forked workers inherit it."""
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a missing optional SDK is the worker's problem, not ours
            pass
    _load_registries()
    _warm_inspect_caches()


def _load_registries() -> None:
    """Load every installed package's Inspect registry (inspect_evals: every task module,
    1.5 s), as Inspect does in each process on its first `get_model` (it looks for hooks in
    all of them), and mark them loaded (a private part of Inspect; the fallback only
    imports them)."""
    try:
        from inspect_ai._util.entrypoints import ensure_entry_points

        ensure_entry_points()
        return
    except ImportError:
        pass
    for entry in entry_points(group="inspect_ai"):
        try:
            entry.load()
        except Exception:
            pass


def _warm_inspect_caches() -> None:
    """Fill, once in the parent, what Inspect computes again in every worker or every eval.

    - its model database (YAML files, 0.15 s), read on a worker's first sample;
    - `importlib.metadata.packages_distributions()`, a scan of every installed package
      (0.5 s) that Inspect runs for every eval of a task from a .py file, to record which
      package ships the task; the installed packages do not change during a run;
    - that lookup itself, per task module (0.13 s per eval of an inspect_evals task: it
      resolves every file of the package).
    Private parts of Inspect: if they move, this does nothing and only speed is lost.
    """
    try:
        from inspect_ai.model._model_info import _get_model_info_db

        _get_model_info_db()
    except Exception:
        pass
    try:
        import importlib.metadata

        from inspect_ai._eval.task import log as task_log
        from inspect_ai._util import package

        distributions = importlib.metadata.packages_distributions()
        package.packages_distributions = lambda: distributions
        task_log.get_distribution_for_object = _by_module(task_log.get_distribution_for_object)
    except Exception:
        pass


def _by_module(find: Any) -> Any:
    """`find(obj)` depends only on the module that defines obj: look each module up once."""
    found: dict[str | None, Any] = {}

    def find_by_module(obj: Any) -> Any:
        module = getattr(obj, "__module__", None)
        if module not in found:
            found[module] = find(obj)
        return found[module]

    return find_by_module


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
