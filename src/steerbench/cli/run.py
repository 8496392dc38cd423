"""`steerbench run`: run the (multiplier x benchmark) grid, resuming what is missing."""

from __future__ import annotations

import sys

import click

from ..core.config import ConfigError
from .options import EXIT_FAILED, friendly_errors, parse_shard, synthetic_data_option, synthetic_gpqa_sha256
from .output import error, print_plan, print_sandbox_warning, print_shared_servers, print_summary, say


@click.command()
@click.option("--multiplier", "multipliers", multiple=True, help="Multiplier to run (repeatable), as in deployments.jsonl.")
@click.option("--all", "run_all", is_flag=True, help="Run every multiplier in deployments.jsonl.")
@click.option("--benchmark", "benchmark_names", multiple=True, help="Only these benchmarks (repeatable).")
@click.option("--category", "categories", multiple=True, help="Only these categories (repeatable).")
@click.option("--deployments", default="deployments.jsonl", show_default=True, help="Endpoints file.")
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True, help="Benchmarks file.")
@click.option("--log-root", default="logs", show_default=True, help="Log root (a folder or s3://bucket/prefix).")
@click.option("--limit", type=int, default=None, help="Samples per eval (smoke runs).")
@click.option("--max-connections", type=int, default=None, help="Concurrent requests per endpoint [default: 20].")
@click.option("--max-connections-per-server", type=int, default=None,
              help="Cap on concurrent requests to one server, summed over the multipliers that share its URL "
                   "[default: 32 for a URL several multipliers share; none for a URL of its own].")
@click.option("--temperature", type=float, default=None, help="Override the study's temperature (0.0).")
@click.option("--max-tokens", type=int, default=None, help="Override the study's max_tokens (1000).")
@click.option("--request-timeout", type=int, default=None, help="Seconds per request attempt before retrying (100).")
@click.option("--sandbox", type=click.Choice(["docker", "local"]), default=None,
              help="Sandbox for code benchmarks. 'local' runs model-written code on this machine.")
@click.option("--shard", default=None, help="Run only shard i of n (i/n), for several machines sharing a log root.")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default: one per multiplier, at most 32, so every endpoint is busy at once; "
                   "one per core where workers cannot be forked).")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit without sending anything.")
@click.option("--progress-every", type=click.FloatRange(min=0.1), default=60.0, show_default=True, metavar="SECONDS",
              help="Where the output is not a terminal: at most one progress line per running cell this often.")
@click.option("--quiet", is_flag=True, help="Print only the final summary.")
@synthetic_data_option
@click.option("--retry-wait", type=float, default=None, hidden=True,
              help="Seconds between retries of a failed request instead of Inspect's backoff (tests, local servers).")
@friendly_errors
def run(multipliers: tuple[str, ...], run_all: bool, benchmark_names: tuple[str, ...], categories: tuple[str, ...],
        deployments: str, benchmarks: str, log_root: str, limit: int | None, max_connections: int | None,
        max_connections_per_server: int | None, temperature: float | None, max_tokens: int | None, request_timeout: int | None, sandbox: str | None,
        shard: str | None, workers: int | None, dry_run: bool, progress_every: float, quiet: bool,
        synthetic_data: bool, retry_wait: float | None) -> None:
    """Run the (multiplier x benchmark) grid; re-running resumes what is missing."""
    from ..core.config import DEFAULT_MAX_CONNECTIONS
    from ..core.paths import require_filesystem
    from ..core.plan import RunOptions
    from ..execution.study import load_plan, preflight, run_study

    if workers is not None and workers < 1:
        raise ConfigError("command line", "must be at least 1", field="--workers")
    require_filesystem(log_root)
    overrides = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "timeout": request_timeout}.items() if v is not None}
    options = RunOptions(
        multipliers=multipliers, all=run_all, benchmarks=benchmark_names, categories=categories,
        limit=limit, max_connections=DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections,
        max_connections_per_server=max_connections_per_server,
        generate=overrides, sandbox=sandbox, shard=parse_shard(shard),
        retry_wait=retry_wait, trust_gpqa_sha256=synthetic_gpqa_sha256(synthetic_data),
    )
    plan = load_plan(deployments, benchmarks, options)
    if dry_run:
        print_plan(plan, log_root)
        return
    if not plan.cells:
        say("nothing to run: no cells match the filters")
        return
    for warning in plan.warnings:
        error(f"warning: {warning}")
    print_sandbox_warning(plan)
    talk = (lambda line: None) if quiet else say
    print_shared_servers(plan, talk)
    talk(f"preflight: checking {len(plan.deployments)} endpoint(s)...")
    ready = preflight(plan, log_root)
    talk(f"running {len(plan.cells)} cell(s) into {log_root}")
    from .progress import make_monitor

    result = run_study(plan, ready, log_root, workers, monitor=make_monitor(quiet, progress_every, len(plan.cells)))
    print_summary(result)
    if result.failed:
        sys.exit(EXIT_FAILED)


command = run
