"""`steerbench status`: where the study stands, per cell, from log headers only."""

from __future__ import annotations

import json
import sys
import time

import click

from .options import friendly_errors
from .output import print_status, say

WATCH_SECONDS = 5.0


@click.command()
@click.option(
    "--log-root", default="logs", show_default=True, help="Log root to read (a folder or s3://bucket/prefix)."
)
@click.option(
    "--deployments",
    default="deployments.jsonl",
    show_default=True,
    help="Used, if present, for the grid's planned cells.",
)
@click.option(
    "--benchmarks",
    default="benchmarks.jsonl",
    show_default=True,
    help="Used, if present, for the grid's planned cells.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the grid as JSON, for scripts.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.5),
    is_flag=False,
    flag_value=WATCH_SECONDS,
    default=None,
    metavar="[SECONDS]",
    help=f"Show it again every SECONDS (default {WATCH_SECONDS:g}) until Ctrl-C; in a terminal it is redrawn in place.",
)
@friendly_errors
def status(log_root: str, deployments: str, benchmarks: str, as_json: bool, watch: float | None) -> None:
    """Where the study stands: done, partial, failed, running or missing, per cell (log headers only)."""
    from ..core.paths import require_filesystem
    from ..core.plan import planned_cells
    from ..results.status import study_status

    require_filesystem(log_root)

    def show() -> None:
        result = study_status(log_root, planned_cells(deployments, benchmarks))
        if as_json:
            say(json.dumps(result.to_json(), indent=2))
        else:
            print_status(result)

    if watch is None:
        show()
        return
    in_place = sys.stdout.isatty()
    try:
        while True:
            if in_place:
                click.clear()
            show()
            if not in_place:
                say("")
            time.sleep(watch)
    except KeyboardInterrupt:
        return  # watching ends with Ctrl-C; nothing was interrupted


command = status
