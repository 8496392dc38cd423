"""`steerbench report`: figures, paired statistics, flags and a self-contained report.html."""

from __future__ import annotations

import os
import sys

import click

from ..core.config import ConfigError
from .options import EXIT_FAILED, friendly_errors, planned_cell_files
from .output import error, print_flags, print_skipped, say


@click.command()
@click.option("--log-root", default="logs", show_default=True, help="Log root to read (a folder or s3://bucket/prefix).")
@click.option("--csv", "csv_path", default="data/aggregated_inspect_logs.csv", show_default=True,
              help="Aggregate CSV, rewritten from the logs; scores.csv and paired_differences.csv go next to it.")
@click.option("--out", default="outputs", show_default=True, help="Folder for figures/ and report.html.")
@click.option("--margin", default=0.02, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Safe range: the largest harm from multiplier 0 that counts as none, on the 0-1 scale "
                   "(0.02 = 2 percentage points); safe_range.csv goes next to --csv.")
@planned_cell_files
@friendly_errors
def report(log_root: str, csv_path: str, out: str, margin: float, deployments: str, benchmarks: str) -> None:
    """Figures, paired statistics, flags and a self-contained report.html from the logs."""
    from ..core.paths import is_remote, require_filesystem
    from ..core.plan import planned_cells
    from ..report.html import write_analysis
    from ..results.analysis import analyse

    require_filesystem(log_root)
    for name, path in (("--out", out), ("--csv", csv_path)):
        if is_remote(path):
            raise ConfigError("command line", "must be a local folder or file", field=name)
    analysis = analyse(log_root, planned_cells(deployments, benchmarks), margin)
    print_skipped(analysis.aggregate.skipped)
    rows = analysis.aggregate.rows
    if not any(r.get("status") != "missing" for r in rows):
        planned = f" ({len(rows)} planned cells, none run yet)" if rows else ""
        error(f"error: no steerbench logs under {log_root}{planned}: nothing to report")
        sys.exit(EXIT_FAILED)
    files = write_analysis(analysis, csv_path, out)
    say(f"wrote {files.csv}, {files.scores_csv}, {files.paired_csv}, {files.safe_range_csv}")
    say(f"wrote {len(files.figures)} figures (PNG and PDF) to {os.path.join(out, 'figures')}")
    for name, reason in (files.left_out or {}).items():
        say(f"left out the figure {name}: {reason}")
    say(f"wrote {files.html} (open it in a browser; it needs no network)")
    print_flags(analysis.flags, rows)


command = report
