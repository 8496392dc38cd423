"""`steerbench report`: figures, paired statistics, flags and a self-contained report.html."""

from __future__ import annotations

import os
import sys

import click

from ..core.config import ConfigError
from .options import EXIT_FAILED, friendly_errors, planned_cell_files
from .output import error, print_flags, print_skipped, say


@click.command()
@click.option(
    "--log-root", default="logs", show_default=True, help="Log root to read (a folder or s3://bucket/prefix)."
)
@click.option(
    "--csv",
    "csv_path",
    default="data/aggregated_inspect_logs.csv",
    show_default=True,
    help="Aggregate CSV, rewritten from the logs; scores.csv and paired_differences.csv go next to it.",
)
@click.option("--out", default="outputs", show_default=True, help="Folder for figures/ and report.html.")
@click.option(
    "--margin",
    default=0.02,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Safe range: the largest harm from multiplier 0 that counts as none, on the 0-1 scale "
    "(0.02 = 2 percentage points); safe_range.csv goes next to --csv.",
)
@click.option(
    "--compare",
    "compare",
    multiple=True,
    metavar="LABEL=LOG_ROOT",
    help="Set several studies side by side (give it once per study, at least twice): "
    "compare.html, figures and CSVs with a study column go to --out; --log-root and --csv are not used.",
)
@click.option(
    "--axis",
    type=click.Choice(["multiplier", "relative-norm"]),
    default="multiplier",
    show_default=True,
    help="With --compare: the x axis. relative-norm: |m·v| / residual norm from `steerbench serve`'s "
    "provenance, the unit that compares models, layers and vectors.",
)
@planned_cell_files
@friendly_errors
def report(
    log_root: str,
    csv_path: str,
    out: str,
    margin: float,
    compare: tuple[str, ...],
    axis: str,
    deployments: str,
    benchmarks: str,
) -> None:
    """Figures, paired statistics, flags and a self-contained report.html from the logs."""
    from ..core.paths import is_remote, require_filesystem
    from ..core.plan import planned_cells
    from ..report.html import write_analysis
    from ..results.analysis import analyse

    if compare or axis != "multiplier":
        compare_studies(compare, out, margin, axis)
        return
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


def compare_studies(compare: tuple[str, ...], out: str, margin: float, axis: str) -> None:
    """`report --compare`: every study checked before anything is written (report/compare.py)."""
    from ..core.paths import is_remote, require_filesystem
    from ..report.compare import Study, check_axis, parse_studies, write_comparison
    from ..results.analysis import analyse

    if not compare:
        raise ConfigError("command line", "is only used with --compare", field="--axis")
    if is_remote(out):
        raise ConfigError("command line", "must be a local folder", field="--out")
    studies = []
    for label, root in parse_studies(compare):
        require_filesystem(root)
        if not is_remote(root) and not os.path.isdir(root.removeprefix("file://")):
            raise ConfigError("command line", f"study {label!r}: no such log root {root}", field="--compare")
        analysis = analyse(root, None, margin)
        print_skipped(analysis.aggregate.skipped)
        if not any(r.get("status") != "missing" for r in analysis.aggregate.rows):
            raise ConfigError("command line", f"study {label!r}: no steerbench logs under {root}", field="--compare")
        studies.append(Study(label, root, analysis))
    check_axis(studies, axis)
    files = write_comparison(studies, out, axis)
    say(f"compared {len(studies)} studies: {', '.join(s.label for s in studies)}")
    say(f"wrote {files.safe_range_csv}, {files.paired_csv}, {files.scores_csv}")
    say(f"wrote {len(files.figures)} figures (PNG and PDF) to {os.path.join(out, 'figures')}")
    for study in studies:
        ranges = study.analysis.steering.ranges if study.analysis.steering else []
        say(
            f"safe ranges, {study.label}: "
            + ("; ".join(f"{r.label} {r.lowest_safe} … {r.highest_safe}" for r in ranges) or "none")
        )
    say(f"wrote {files.html} (open it in a browser; it needs no network)")


command = report
