"""What run and aggregate print for people: the plan, warnings, planned cells."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import click

from .config import load_benchmarks, load_deployments
from .plan import Plan
from .run import join_path


def print_plan(plan: Plan, log_root: str, out: Callable[[str], None] = click.echo) -> None:
    out(f"plan: {len(plan.cells)} cell(s) over {len(plan.deployments)} endpoint(s); nothing will be sent (dry run)")
    out("endpoints:")
    for dep in plan.deployments:
        model = dep.model or "(asked from GET /models at run time)"
        out(f"  multiplier {dep.multiplier.label:>6}  {dep.url}  key {dep.key_display}  model {model}")
    out("cells:")
    for cell in plan.cells:
        args = json.dumps(cell.task_args, sort_keys=True)
        gen = json.dumps(cell.generate, sort_keys=True)
        out(f"  {cell.label:<22} m={cell.multiplier.label:>6}  {cell.eval_name}  task_args={args}  generate={gen}"
            + (f"  model_roles={json.dumps(cell.model_roles)}" if cell.model_roles else ""))
        out(f"  {'':<22} -> {join_path(log_root, cell.folder)}/")
    opts = plan.options
    out(f"options: limit={opts.limit} max_connections={opts.max_connections} per endpoint"
        + (f" shard={opts.shard[0]}/{opts.shard[1]}" if opts.shard else ""))
    for warning in plan.warnings:
        out(f"warning: {warning}")
    print_sandbox_warning(plan, out)


def print_sandbox_warning(plan: Plan, out: Callable[[str], None] | None = None) -> None:
    local = sorted({c.benchmark for c in plan.cells if c.sandbox == "local"})
    if local:
        message = (
            f"WARNING: sandbox=local: {', '.join(local)} will execute model-written code directly on this "
            "machine, with your user's permissions. Use --sandbox docker where Docker is available."
        )
        (out or (lambda s: click.echo(s, err=True)))(message)


def planned_cells(deployments_path: str, benchmarks_path: str) -> list[tuple[str, str, str, str]] | None:
    """Every (benchmark, subset, multiplier, category) the two files describe, if both exist."""
    if not (os.path.exists(deployments_path) and os.path.exists(benchmarks_path)):
        return None
    deployments = load_deployments(deployments_path)
    benchmarks = load_benchmarks(benchmarks_path)
    return [
        (b.name, s.name, d.multiplier.label, b.category)
        for b in benchmarks
        for s in b.subsets
        for d in deployments
    ]
