"""The `steerbench` command: a thin layer over the package's functions.

Inspect is imported inside the commands that need it, so `steerbench --help` stays fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from .config import ConfigError

EXIT_USER_ERROR = 2
EXIT_FAILED = 1


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """User mistakes: one line and exit 2. Environment problems: a list and exit 1. No tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .endpoints import PreflightError
        from .locks import RunLockedError

        try:
            return command(*args, **kwargs)
        except ConfigError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except PreflightError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_FAILED)
        except RunLockedError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_FAILED)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: run the same command again to resume", err=True)
            sys.exit(130)

    return wrapper


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise ConfigError("command line", f"{value!r} is not of the form i/n, e.g. 1/4", field="--shard") from None
    return index, count


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="steerbench")
def main() -> None:
    """Benchmark steered models across steering multipliers with Inspect."""


@main.command()
@click.option("--multiplier", "multipliers", multiple=True, help="Multiplier to run (repeatable), as in deployments.jsonl.")
@click.option("--all", "run_all", is_flag=True, help="Run every multiplier in deployments.jsonl.")
@click.option("--benchmark", "benchmark_names", multiple=True, help="Only these benchmarks (repeatable).")
@click.option("--category", "categories", multiple=True, help="Only these categories (repeatable).")
@click.option("--deployments", default="deployments.jsonl", show_default=True, help="Endpoints file.")
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True, help="Benchmarks file.")
@click.option("--log-root", default="logs", show_default=True, help="Log root (a folder or s3://bucket/prefix).")
@click.option("--limit", type=int, default=None, help="Samples per eval (smoke runs).")
@click.option("--max-connections", type=int, default=None, help="Concurrent requests per endpoint [default: 20].")
@click.option("--temperature", type=float, default=None, help="Override the study's temperature (0.0).")
@click.option("--max-tokens", type=int, default=None, help="Override the study's max_tokens (1000).")
@click.option("--request-timeout", type=int, default=None, help="Seconds per request attempt before retrying (100).")
@click.option("--sandbox", type=click.Choice(["docker", "local"]), default=None,
              help="Sandbox for code benchmarks. 'local' runs model-written code on this machine.")
@click.option("--shard", default=None, help="Run only shard i of n (i/n), for several machines sharing a log root.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core, at most one per multiplier).")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit without sending anything.")
@friendly_errors
def run(multipliers: tuple[str, ...], run_all: bool, benchmark_names: tuple[str, ...], categories: tuple[str, ...],
        deployments: str, benchmarks: str, log_root: str, limit: int | None, max_connections: int | None,
        temperature: float | None, max_tokens: int | None, request_timeout: int | None, sandbox: str | None,
        shard: str | None, workers: int | None, dry_run: bool) -> None:
    """Run the (multiplier x benchmark) grid; re-running resumes what is missing."""
    from .config import DEFAULT_MAX_CONNECTIONS
    from .plan import RunOptions
    from .console import print_plan, print_sandbox_warning
    from .study import load_plan, preflight, run_study

    if workers is not None and workers < 1:
        raise ConfigError("command line", "must be at least 1", field="--workers")
    overrides = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "timeout": request_timeout}.items() if v is not None}
    options = RunOptions(
        multipliers=multipliers, all=run_all, benchmarks=benchmark_names, categories=categories,
        limit=limit, max_connections=DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections,
        generate=overrides, sandbox=sandbox, shard=_parse_shard(shard),
    )
    plan = load_plan(deployments, benchmarks, options)
    if dry_run:
        print_plan(plan, log_root)
        return
    if not plan.cells:
        click.echo("nothing to run: no cells match the filters")
        return
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    print_sandbox_warning(plan)
    click.echo(f"preflight: checking {len(plan.deployments)} endpoint(s)...")
    ready = preflight(plan, benchmarks)
    click.echo(f"running {len(plan.cells)} cell(s) into {log_root}")
    from .run import print_summary

    result = run_study(plan, ready, log_root, workers)
    print_summary(result, click.echo)
    if result.failed:
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--log-root", default="logs", show_default=True, help="Log root to read.")
@click.option("--output", default="data/aggregated_inspect_logs.csv", show_default=True, help="CSV to write.")
@click.option("--deployments", default="deployments.jsonl", show_default=True,
              help="Used, if present, to list planned cells that have no log.")
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True,
              help="Used, if present, to list planned cells that have no log.")
@friendly_errors
def aggregate(log_root: str, output: str, deployments: str, benchmarks: str) -> None:
    """Flatten the logs into one CSV row per (benchmark, subset, multiplier)."""
    from .aggregate import aggregate as run_aggregate
    from .aggregate import write_csv
    from .console import planned_cells

    planned = planned_cells(deployments, benchmarks)
    result = run_aggregate(log_root, planned)
    for reason in result.skipped:
        click.echo(f"warning: skipped unreadable log {reason}", err=True)
    write_csv(result, output)
    cells = sum(1 for r in result.rows if r.get("status") != "missing")
    click.echo(f"wrote {output}: {cells} cell(s) from {log_root}")
    for line in result.failed:
        click.echo(f"not successful: {line}")
    for line in result.missing:
        click.echo(f"missing: {line}")


if __name__ == "__main__":
    main()
