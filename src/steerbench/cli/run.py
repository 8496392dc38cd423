"""`steerbench run`: run the (multiplier x benchmark) grid, resuming what is missing."""

from __future__ import annotations

import sys

from typing import TYPE_CHECKING

import click

from ..core.config import ConfigError
from .options import EXIT_FAILED, friendly_errors, parse_shard, synthetic_data_option, synthetic_gpqa_sha256
from .output import (
    error,
    print_adaptive_cells,
    print_plan,
    print_sandbox_warning,
    print_shared_servers,
    print_summary,
    say,
)

if TYPE_CHECKING:
    from ..core.adaptive import AdaptiveSettings
    from ..core.plan import Plan


@click.command()
@click.option(
    "--multiplier", "multipliers", multiple=True, help="Multiplier to run (repeatable), as in deployments.jsonl."
)
@click.option("--all", "run_all", is_flag=True, help="Run every multiplier in deployments.jsonl.")
@click.option("--benchmark", "benchmark_names", multiple=True, help="Only these benchmarks (repeatable).")
@click.option("--category", "categories", multiple=True, help="Only these categories (repeatable).")
@click.option("--deployments", default="deployments.jsonl", show_default=True, help="Endpoints file.")
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True, help="Benchmarks file.")
@click.option("--log-root", default="logs", show_default=True, help="Log root (a folder or s3://bucket/prefix).")
@click.option("--limit", type=int, default=None, help="Samples per eval (smoke runs).")
@click.option("--max-connections", type=int, default=None, help="Concurrent requests per endpoint [default: 20].")
@click.option(
    "--max-connections-per-server",
    type=int,
    default=None,
    help="Cap on concurrent requests to one server, summed over the multipliers that share its URL "
    "[default: 32 for a URL several multipliers share; none for a URL of its own].",
)
@click.option("--temperature", type=float, default=None, help="Override the study's temperature (0.0).")
@click.option("--max-tokens", type=int, default=None, help="Override the study's max_tokens (1000).")
@click.option("--request-timeout", type=int, default=None, help="Seconds per request attempt before retrying (100).")
@click.option(
    "--sandbox",
    type=click.Choice(["docker", "local"]),
    default=None,
    help="Sandbox for code benchmarks. 'local' runs model-written code on this machine.",
)
@click.option("--shard", default=None, help="Run only shard i of n (i/n), for several machines sharing a log root.")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Worker processes (default: one per multiplier, at most 32, so every endpoint is busy at once; "
    "one per core where workers cannot be forked).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and exit without sending anything.")
@click.option(
    "--progress-every",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Where the output is not a terminal: at most one progress line per running cell this often.",
)
@click.option("--quiet", is_flag=True, help="Print only the final summary.")
@click.option(
    "--adaptive",
    is_flag=True,
    help="Run samples in growing batches and stop each cell once an anytime-valid interval decides it "
    "(docs/how-to/adaptive.md).",
)
@click.option("--margin", type=float, default=None, help="--adaptive: harm margin on the 0-1 scale [default: 0.02].")
@click.option(
    "--precision",
    type=float,
    default=None,
    help="--adaptive: also stop a cell once its interval is this narrow [default: 0.01].",
)
@click.option("--first-batch", type=int, default=None, help="--adaptive: samples in the first batch [default: 50].")
@click.option(
    "--goal",
    type=click.Choice(["curves", "safe-range"]),
    default=None,
    help="--adaptive: 'safe-range' also stops cells past the first harmful multiplier on a side [default: curves].",
)
@synthetic_data_option
@click.option(
    "--retry-wait",
    type=float,
    default=None,
    hidden=True,
    help="Seconds between retries of a failed request instead of Inspect's backoff (tests, local servers).",
)
@friendly_errors
def run(
    multipliers: tuple[str, ...],
    run_all: bool,
    benchmark_names: tuple[str, ...],
    categories: tuple[str, ...],
    deployments: str,
    benchmarks: str,
    log_root: str,
    limit: int | None,
    max_connections: int | None,
    max_connections_per_server: int | None,
    temperature: float | None,
    max_tokens: int | None,
    request_timeout: int | None,
    sandbox: str | None,
    shard: str | None,
    workers: int | None,
    dry_run: bool,
    progress_every: float,
    quiet: bool,
    adaptive: bool,
    margin: float | None,
    precision: float | None,
    first_batch: int | None,
    goal: str | None,
    synthetic_data: bool,
    retry_wait: float | None,
) -> None:
    """Run the (multiplier x benchmark) grid; re-running resumes what is missing."""
    from ..core.config import DEFAULT_MAX_CONNECTIONS
    from ..core.paths import require_filesystem
    from ..core.plan import RunOptions
    from ..execution.study import load_plan, preflight, run_study

    if workers is not None and workers < 1:
        raise ConfigError("command line", "must be at least 1", field="--workers")
    require_filesystem(log_root)
    overrides = {
        k: v
        for k, v in {"temperature": temperature, "max_tokens": max_tokens, "timeout": request_timeout}.items()
        if v is not None
    }
    options = RunOptions(
        multipliers=multipliers,
        all=run_all,
        benchmarks=benchmark_names,
        categories=categories,
        limit=limit,
        max_connections=DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections,
        max_connections_per_server=max_connections_per_server,
        generate=overrides,
        sandbox=sandbox,
        shard=parse_shard(shard),
        retry_wait=retry_wait,
        trust_gpqa_sha256=synthetic_gpqa_sha256(synthetic_data),
        adaptive=adaptive_settings(adaptive, margin, precision, first_batch, goal),
    )
    plan = load_plan(deployments, benchmarks, options)
    if dry_run:
        print_plan(plan, log_root)
        if plan.options.adaptive is not None:
            say(adaptive_plan_line(plan))
        return
    if not plan.cells:
        say("nothing to run: no cells match the filters")
        return
    for warning in plan.warnings:
        error(f"warning: {warning}")
    print_sandbox_warning(plan)
    talk = (lambda line: None) if quiet else say
    print_shared_servers(plan, talk)
    if plan.options.adaptive is not None:
        refuse_earlier_full_run(plan, log_root)
    talk(f"preflight: checking {len(plan.deployments)} endpoint(s)...")
    ready = preflight(plan, log_root)
    talk(f"running {len(plan.cells)} cell(s) into {log_root}" + (" adaptively" if plan.options.adaptive else ""))
    from .progress import make_monitor

    def run_round(part):  # type: ignore[no-untyped-def]
        return run_study(part, ready, log_root, workers, monitor=make_monitor(quiet, progress_every, len(part.cells)))

    if plan.options.adaptive is not None:
        from ..execution.adaptive import judged_from, run_adaptive
        from ..results.adaptive import judge

        result = run_adaptive(plan, log_root, lambda root: judged_from(judge(root)), run_round, talk)
        print_summary(result)
        print_adaptive_cells(judge(log_root))
    else:
        result = run_round(plan)
        print_summary(result)
    if result.failed:
        sys.exit(EXIT_FAILED)


def adaptive_settings(
    adaptive: bool, margin: float | None, precision: float | None, first_batch: int | None, goal: str | None
) -> AdaptiveSettings | None:
    from ..core.adaptive import AdaptiveSettings

    given = {"--margin": margin, "--precision": precision, "--first-batch": first_batch, "--goal": goal}
    if not adaptive:
        for flag, value in given.items():
            if value is not None:
                raise ConfigError("command line", "only with --adaptive", field=flag)
        return None
    defaults = AdaptiveSettings()
    return AdaptiveSettings(
        margin=defaults.margin if margin is None else margin,
        precision=defaults.precision if precision is None else precision,
        first_batch=defaults.first_batch if first_batch is None else first_batch,
        goal=goal or defaults.goal,
    )


def adaptive_plan_line(plan: Plan) -> str:
    from ..execution.adaptive import tests_in

    settings = plan.options.adaptive
    assert settings is not None
    return (
        f"adaptive: batches of {settings.first_batch}, then doubling, until each cell is decided; margin "
        f"{settings.margin}, precision {settings.precision}, goal {settings.goal}; alpha "
        f"{settings.family_alpha} / {tests_in(plan)} cells = {settings.cell_alpha(tests_in(plan)):.2e} per cell"
    )


def refuse_earlier_full_run(plan: Plan, log_root: str) -> None:
    """An adaptive run into a log root that holds a full (non-adaptive) run of the same cells would
    mix the two in aggregate and report: refused (exit 2) before anything is sent."""
    from ..results.aggregate import read_headers

    planned = {(c.benchmark, c.subset, c.multiplier.value) for c in plan.cells}
    headers, _ = read_headers(log_root)
    clash = next(
        (h for h in headers if not h.adaptive and (h.benchmark, h.subset, float(h.multiplier)) in planned), None
    )
    if clash is not None:
        raise ConfigError(
            "command line",
            f"{log_root} already holds a non-adaptive run of {clash.benchmark} at "
            f"multiplier {clash.multiplier} ({clash.row.get('log_file')}); use another --log-root for "
            "the adaptive study",
            field="--log-root",
        )
    settings = plan.options.adaptive
    assert settings is not None
    asked = {"--margin": settings.margin, "--precision": settings.precision, "--goal": settings.goal}
    for h in headers:  # a resumed study keeps the settings its batches were judged with
        earlier = h.adaptive or {}
        for flag, value in asked.items():
            before = earlier.get(flag.removeprefix("--"))
            if before is not None and before != value:
                raise ConfigError(
                    "command line",
                    f"{log_root} holds an adaptive study run with {flag} {before} "
                    f"({h.row.get('log_file')}); resume it with the same value, or use another "
                    "--log-root",
                    field=flag,
                )


command = run
