"""`steerbench aggregate`: flatten the logs into one CSV row per cell, and list the flags.

The flags are the report's, but those that need sample scores (unreadable, score mismatch).
"""

from __future__ import annotations

import click

from .options import friendly_errors, planned_cell_files
from .output import print_flags, print_skipped, say


@click.command()
@click.option("--log-root", default="logs", show_default=True, help="Log root to read.")
@click.option("--output", default="data/aggregated_inspect_logs.csv", show_default=True, help="CSV to write.")
@planned_cell_files
@friendly_errors
def aggregate(log_root: str, output: str, deployments: str, benchmarks: str) -> None:
    """Flatten the logs into one CSV row per (benchmark, subset, multiplier)."""
    from ..core.paths import require_filesystem
    from ..core.plan import planned_cells
    from ..results.aggregate import aggregate as run_aggregate
    from ..results.aggregate import write_csv
    from ..results.flags import find_flags
    from ..results.steering_range import row_health_flags

    require_filesystem(log_root)
    planned = planned_cells(deployments, benchmarks)
    result = run_aggregate(log_root, planned)
    print_skipped(result.skipped)
    write_csv(result, output)
    cells = sum(1 for r in result.rows if r.get("status") != "missing")
    say(f"wrote {output}: {cells} cell(s) from {log_root}")
    # the output-health flags need each cell's health sidecar, read here as the report reads it
    print_flags(find_flags(result.rows) + row_health_flags(result.rows), result.rows)


command = aggregate
