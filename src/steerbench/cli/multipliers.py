"""`steerbench multipliers`: the multipliers of deployments.jsonl, one per line, for scripts."""

from __future__ import annotations

import click

from .options import friendly_errors
from .output import say


@click.command()
@click.option("--deployments", default="deployments.jsonl", show_default=True, help="Endpoints file.")
@friendly_errors
def multipliers(deployments: str) -> None:
    """Print the multipliers in deployments.jsonl, one per line (for scripts; checks the file)."""
    from ..core.config import load_deployments

    for deployment in load_deployments(deployments):
        say(deployment.multiplier.label)


command = multipliers
