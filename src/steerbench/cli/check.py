"""`steerbench check`: the preflight `run` performs, on its own, plus a steering sanity check."""

from __future__ import annotations

import sys

import click

from .options import EXIT_FAILED, friendly_errors
from .output import print_check_report, print_sandbox_warning, say


@click.command()
@click.option("--multiplier", "multipliers", multiple=True, help="Check only these multipliers (repeatable).")
@click.option("--deployments", default="deployments.jsonl", show_default=True, help="Endpoints file.")
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True, help="Benchmarks file.")
@click.option(
    "--log-root", default="logs", show_default=True, help="Log root the run will write (checked for writing)."
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for each request.")
@click.option(
    "--sandbox",
    type=click.Choice(["docker", "local"]),
    default=None,
    help="The sandbox `run` will be given, to warn about 'local' as run does.",
)
@friendly_errors
def check(
    multipliers: tuple[str, ...], deployments: str, benchmarks: str, log_root: str, timeout: float, sandbox: str | None
) -> None:
    """Preflight every endpoint (reachable, key, model, latency) and check that steering changes answers."""
    from ..core.paths import require_filesystem
    from ..core.plan import RunOptions
    from ..execution.check import SANITY_PROMPTS, run_check
    from ..execution.study import load_plan

    require_filesystem(log_root)
    plan = load_plan(deployments, benchmarks, RunOptions(multipliers=multipliers, all=not multipliers, sandbox=sandbox))
    print_sandbox_warning(plan)  # on stderr, before anything is sent, as `run` does
    say(f"checking {len(plan.deployments)} endpoint(s)...")
    report = run_check(plan, log_root, timeout=timeout)
    print_check_report(report, len(SANITY_PROMPTS))
    if not report.ok:
        sys.exit(EXIT_FAILED)


command = check
