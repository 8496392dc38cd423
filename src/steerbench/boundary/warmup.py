"""Warming a process before it forks its workers: Inspect's modules, registries and caches, once.

Starting a worker used to cost ~5 s of CPU each (spawn, then importing inspect_ai, the
inspect_evals registry, the OpenAI and Anthropic SDKs). On Linux the parent imports them
once here and forks its workers, which inherit them (steerbench.execution.workers).
Private parts of Inspect: if they move, the warm-up does less and only speed is lost.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

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


def preload_inspect() -> None:
    """Import in this process what every worker needs; forked workers inherit it."""
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a missing optional SDK is the worker's problem, not ours
            pass
    load_registries()
    warm_inspect_caches()


def load_registries() -> None:
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


def warm_inspect_caches() -> None:
    """Fill, once in the parent, what Inspect computes again in every worker or every eval.

    - its model database (YAML files, 0.15 s), read on a worker's first sample;
    - `importlib.metadata.packages_distributions()`, a scan of every installed package
      (0.5 s) that Inspect runs for every eval of a task from a .py file, to record which
      package ships the task; the installed packages do not change during a run;
    - that lookup itself, per task module (0.13 s per eval of an inspect_evals task: it
      resolves every file of the package).
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
