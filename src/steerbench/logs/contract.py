"""What steerbench writes into every Inspect log it makes, so readers know which cell a log is."""

from __future__ import annotations

from typing import Any

# the key of steerbench's cell description in an eval's metadata
STEERBENCH_METADATA = "steerbench"


def cell_metadata(cell: Any) -> dict[str, Any]:
    """The metadata a cell's log carries (a steerbench.core.plan.Cell)."""
    metadata = {
        "benchmark": cell.benchmark,
        "subset": cell.subset,
        "category": cell.category,
        "multiplier": cell.multiplier.label,
        "multiplier_value": cell.multiplier.value,
        "shots": cell.shots,
        "eval_name": cell.eval_name,
    }
    slice_ = getattr(cell, "adaptive", None)
    if slice_ is not None:  # one batch of an adaptive study (core.adaptive): what it ran and how it is judged
        metadata["adaptive"] = {
            "seed": slice_.seed,
            "start": slice_.start,
            "stop": slice_.stop,
            "alpha": slice_.alpha,
            "margin": slice_.margin,
            "precision": slice_.precision,
            "goal": slice_.goal,
        }
    if getattr(cell, "steering", None):  # written by `steerbench serve`; hand-written deployments have none
        metadata["steering"] = dict(cell.steering)
    return metadata


def steerbench_metadata(log: Any) -> dict[str, Any] | None:
    """The cell description of an EvalLog (header), or None for a log steerbench did not write."""
    return (log.eval.metadata or {}).get(STEERBENCH_METADATA)
