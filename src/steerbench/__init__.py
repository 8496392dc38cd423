"""steerbench: run Inspect benchmarks across steering multipliers and measure what steering costs.

The package's layers, one folder each: `core` (input files, cell keys, the plan; pure),
`tasks` (resolving eval names), `logs` (what the logs carry), `execution` (running a plan),
`boundary` (the only code touching Inspect's private parts), `results` (aggregate, status,
statistics, flags), `report` (HTML and figures), `cli` (the command), `sim` (simulator, demo,
synthetic data), `serve` (the steering vLLM plugin).

The public functions below (the ones the analysis notebook uses) are imported on first use,
so `import steerbench` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> (module, attribute or None for the module itself)
_PUBLIC = {
    "analyse": ("steerbench.results.analysis", "analyse"),
    "aggregate": ("steerbench.results.aggregate", "aggregate"),
    "study_status": ("steerbench.results.status", "study_status"),
    "planned_cells": ("steerbench.core.plan", "planned_cells"),
    "figures": ("steerbench.report.figures", None),
}

__all__ = ["__version__", *_PUBLIC]  # noqa: PLE0604 (the keys of _PUBLIC are strings)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use (~20 ms)
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("steerbench")
        except PackageNotFoundError:  # pragma: no cover (a source tree that is not installed)
            return "0.0.0"
    if name not in _PUBLIC:
        raise AttributeError(f"module 'steerbench' has no attribute {name!r}")
    module_name, attribute = _PUBLIC[name]
    module = import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
