"""`steerbench demo`: the whole study in two minutes, offline, against the built-in simulator."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import EXIT_FAILED, friendly_errors
from .output import say, summary_lines


@click.command()
@click.option("--out", default="steerbench-demo", show_default=True, help="Folder for everything the demo writes.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core).")
@friendly_errors
def demo(out: str, workers: int | None) -> None:
    """The whole study in two minutes, offline, against a built-in SIMULATED model."""
    from ..sim.demo import run_demo

    result = run_demo(Path(out), say=say, workers=workers, summarise=summary_lines)
    if result.failed:
        sys.exit(EXIT_FAILED)


command = demo
