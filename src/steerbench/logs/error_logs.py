"""Putting on record the cells of an eval set that failed before Inspect wrote any log.

Some failures happen while Inspect starts an eval set, before it creates a log per
task: a sandbox that cannot start (HumanEval and MBPP with `sandbox=docker` and no
Docker engine), a dataset that cannot be loaded. Nothing would then be in the log
folder, and `aggregate`, `status` and `report` would show the cells as merely missing.
Here each such cell gets a small Inspect log of its own with status "error" and the
reason, so every reader of the logs shows the failure. A later run of the same folder
is unaffected: Inspect's eval set reruns a task whose latest log is not a success.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, UTC
from typing import Any

from ..core.plan import Cell

# Where a failure comes from a sandbox that could not start, the summary says what to do.
DOCKER_HINT = (
    "(the docker sandbox needs a running Docker engine; or pass --sandbox local to run "
    "model-written code on this machine, see README)"
)


def explain(message: str) -> str:
    """The one-line reason for a failed cell, with a hint when Docker is the cause."""
    if "docker" in message.lower() and "--sandbox local" not in message:
        return f"{message} {DOCKER_HINT}"
    return message


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def error_log(cell: Cell, model: str, message: str, detail: str, metadata: dict[str, Any]) -> Any:
    """An Inspect EvalLog with status 'error' and no samples, naming the cell in its metadata."""
    from inspect_ai.log import EvalConfig, EvalDataset, EvalError, EvalLog, EvalSpec, EvalStats

    now = _now()
    spec = EvalSpec(
        created=now,
        task=cell.eval_name,
        task_args=dict(cell.task_args),
        dataset=EvalDataset(),
        model=model,
        config=EvalConfig(),
        metadata=metadata,
    )
    return EvalLog(
        eval=spec,
        status="error",
        error=EvalError(message=message, traceback=detail, traceback_ansi=detail),
        stats=EvalStats(started_at=now, completed_at=now),
    )


def write_error_logs(
    log_dir: str,
    cells: list[Cell],
    model: str,
    message: str,
    detail: str,
    metadata_of: Callable[[Cell], dict[str, Any]],
) -> list[str]:
    """One error log per cell in `log_dir`; returns their locations. `message` and
    `detail` must already be free of keys (the caller redacts them)."""
    from inspect_ai.log import write_eval_log

    locations = []
    for cell in cells:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S+00-00")
        name = f"{stamp}_{cell.eval_name.split('/')[-1]}_steerbench-error-{secrets.token_hex(6)}.eval"
        location = f"{log_dir.rstrip('/')}/{name}"
        write_eval_log(error_log(cell, model, message, detail, metadata_of(cell)), location)
        locations.append(location)
    return locations
