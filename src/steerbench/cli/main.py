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
@click.option("--workers", type=int, default=None,
              help="Worker processes (default: one per multiplier, at most 32, so every endpoint is busy at once; "
                   "one per core where workers cannot be forked).")
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
    from .paths import require_filesystem

    require_filesystem(log_root)
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
    ready = preflight(plan, benchmarks, log_root)
    click.echo(f"running {len(plan.cells)} cell(s) into {log_root}")
    from .run import print_summary

    result = run_study(plan, ready, log_root, workers)
    print_summary(result, click.echo)
    if result.failed:
        sys.exit(EXIT_FAILED)


def _planned_cell_files(command: Any) -> Any:
    """--deployments and --benchmarks of the commands that read logs: the study's files, used,
    if present, to list planned cells that have no log."""
    for name, default in (("--benchmarks", "benchmarks.jsonl"), ("--deployments", "deployments.jsonl")):
        command = click.option(name, default=default, show_default=True,
                               help="Used, if present, to list planned cells that have no log.")(command)
    return command


@main.command()
@click.option("--log-root", default="logs", show_default=True, help="Log root to read.")
@click.option("--output", default="data/aggregated_inspect_logs.csv", show_default=True, help="CSV to write.")
@_planned_cell_files
@friendly_errors
def aggregate(log_root: str, output: str, deployments: str, benchmarks: str) -> None:
    """Flatten the logs into one CSV row per (benchmark, subset, multiplier)."""
    from .aggregate import aggregate as run_aggregate
    from .aggregate import write_csv
    from .console import planned_cells
    from .paths import require_filesystem

    require_filesystem(log_root)
    planned = planned_cells(deployments, benchmarks)
    result = run_aggregate(log_root, planned)
    for reason in result.skipped:
        click.echo(f"warning: skipped unreadable log {reason}", err=True)
    write_csv(result, output)
    cells = sum(1 for r in result.rows if r.get("status") != "missing")
    click.echo(f"wrote {output}: {cells} cell(s) from {log_root}")
    from .flags import find_flags

    _print_flags(find_flags(result.rows))


def _print_flags(flags: list[Any]) -> None:
    """Cells to check before trusting the numbers (steerbench.flags), one line each."""
    if flags:
        click.echo(f"{len(flags)} flag(s): check these cells before trusting the numbers")
    for flag in flags:
        click.echo(f"flag: {flag}")


@main.command()
@click.option("--log-root", default="logs", show_default=True, help="Log root to read (a folder or s3://bucket/prefix).")
@click.option("--csv", "csv_path", default="data/aggregated_inspect_logs.csv", show_default=True,
              help="Aggregate CSV, rewritten from the logs; paired_differences.csv goes next to it.")
@click.option("--out", default="outputs", show_default=True, help="Folder for figures/ and report.html.")
@_planned_cell_files
@friendly_errors
def report(log_root: str, csv_path: str, out: str, deployments: str, benchmarks: str) -> None:
    """Figures, paired statistics, flags and a self-contained report.html from the logs."""
    import os

    from .analysis import analyse
    from .console import planned_cells
    from .paths import is_remote, require_filesystem
    from .report import write_analysis

    require_filesystem(log_root)
    for name, path in (("--out", out), ("--csv", csv_path)):
        if is_remote(path):
            raise ConfigError("command line", "must be a local folder or file", field=name)
    analysis = analyse(log_root, planned_cells(deployments, benchmarks))
    for reason in analysis.aggregate.skipped:
        click.echo(f"warning: skipped unreadable log {reason}", err=True)
    if not analysis.aggregate.rows:
        raise ConfigError("command line", f"no steerbench logs under {log_root}", field="--log-root")
    files = write_analysis(analysis, csv_path, out)
    click.echo(f"wrote {files.csv}, {files.paired_csv}")
    click.echo(f"wrote {len(files.figures)} figures (PNG and PDF) to {os.path.join(out, 'figures')}")
    click.echo(f"wrote {files.html} (open it in a browser; it needs no network)")
    _print_flags(analysis.flags)


@main.command()
@click.option("--out", default="steerbench-demo", show_default=True, help="Folder for everything the demo writes.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core).")
@friendly_errors
def demo(out: str, workers: int | None) -> None:
    """The whole study in two minutes, offline, against a built-in SIMULATED model."""
    from pathlib import Path

    from .demo import run_demo

    result = run_demo(Path(out), say=click.echo, workers=workers)
    if result.failed:
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--multipliers", default="-1.5,-1.0,-0.5,0.0,0.5,1.0,1.5", show_default=True,
              help="Comma-separated multipliers, one endpoint each.")
@click.option("--port", type=int, default=8000, show_default=True, help="First port; endpoint i listens on port+i.")
@friendly_errors
def simulate(multipliers: str, port: int) -> None:
    """Serve simulated steered endpoints on 127.0.0.1 and print their deployments lines."""
    import json
    import time

    from .config import parse_multiplier
    from .demo import demo_responder
    from .simulator import SIMULATOR_NOTICE, SimulatedEndpoint

    values = [parse_multiplier(m, "command line", None, "--multipliers") for m in multipliers.split(",") if m.strip()]
    endpoints = [SimulatedEndpoint(m.value, demo_responder, port=port + i) for i, m in enumerate(values)]
    try:
        for endpoint, value in zip(endpoints, values):
            try:
                endpoint.start()
            except OSError as e:
                raise ConfigError("command line", f"port {endpoint._requested_port} is not free ({e.strerror})", field="--port") from None
        click.echo(f"# {SIMULATOR_NOTICE}", err=True)
        click.echo("# deployments.jsonl lines (serving until Ctrl-C):", err=True)
        for endpoint, value in zip(endpoints, values):
            click.echo(json.dumps({**endpoint.deployment_line(), "multiplier": value.label}))
        while True:
            time.sleep(3600)
    finally:
        for endpoint in endpoints:
            endpoint.stop()


@main.command()
@click.option("--log-root", default="logs", show_default=True, help="Log root to read (a folder or s3://bucket/prefix).")
@click.option("--deployments", default="deployments.jsonl", show_default=True,
              help="Used, if present, for the grid's planned cells.")
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True,
              help="Used, if present, for the grid's planned cells.")
@click.option("--json", "as_json", is_flag=True, help="Print the grid as JSON, for scripts.")
@friendly_errors
def status(log_root: str, deployments: str, benchmarks: str, as_json: bool) -> None:
    """Where the study stands: done, partial, failed, running or missing, per cell (log headers only)."""
    import json

    from .console import planned_cells
    from .paths import require_filesystem
    from .status import print_status, study_status

    require_filesystem(log_root)
    result = study_status(log_root, planned_cells(deployments, benchmarks))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_status(result, click.echo)


@main.command()
@click.option("--multiplier", "multipliers", multiple=True, help="Check only these multipliers (repeatable).")
@click.option("--deployments", default="deployments.jsonl", show_default=True, help="Endpoints file.")
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True, help="Benchmarks file.")
@click.option("--log-root", default="logs", show_default=True, help="Log root the run will write (checked for writing).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for each request.")
@friendly_errors
def check(multipliers: tuple[str, ...], deployments: str, benchmarks: str, log_root: str, timeout: float) -> None:
    """Preflight every endpoint (reachable, key, model, latency) and check that steering changes answers."""
    from .check import SANITY_PROMPTS, print_report, run_check
    from .paths import require_filesystem
    from .plan import RunOptions
    from .study import load_plan

    require_filesystem(log_root)
    plan = load_plan(deployments, benchmarks, RunOptions(multipliers=multipliers, all=not multipliers))
    click.echo(f"checking {len(plan.deployments)} endpoint(s)...")
    report = run_check(plan, benchmarks, log_root, timeout=timeout)
    print_report(report, len(SANITY_PROMPTS), click.echo)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--deployments", default="deployments.jsonl", show_default=True, help="Endpoints file.")
@friendly_errors
def multipliers(deployments: str) -> None:
    """Print the multipliers in deployments.jsonl, one per line (for scripts; checks the file)."""
    from .config import load_deployments

    for deployment in load_deployments(deployments):
        click.echo(deployment.multiplier.label)



@main.command()
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True, help="Benchmarks file.")
@friendly_errors
def prefetch(benchmarks: str) -> None:
    """Download every dataset the benchmarks need into the local caches, once.

    Afterwards runs can set HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1. Reports each
    benchmark as cached, downloaded or failed; exits 1 if any failed."""
    from .prefetch import prefetch as run_prefetch
    from .prefetch import summary

    statuses = run_prefetch(benchmarks, say=click.echo)
    width = max(len(s.label) for s in statuses)
    for s in statuses:
        click.echo(f"  {s.label:<{width}}  {s.state:<10}  {s.eval_name}" + (f"  {s.detail}" if s.detail else ""))
    click.echo(summary(statuses))
    if any(s.state == "failed" for s in statuses):
        sys.exit(EXIT_FAILED)
    click.echo("runs can now read the datasets offline: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 steerbench run ...")

if __name__ == "__main__":
    main()
