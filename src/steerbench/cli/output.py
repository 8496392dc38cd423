"""Everything the commands print, in one place: plans, run summaries, the status grid, check reports, flags."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from ..core.cells import cell_label, multiplier_sort_key
from ..core.paths import join_path

Out = Callable[[str], None]


def say(line: str = "") -> None:
    """One line on stdout."""
    click.echo(line)


def error(line: str) -> None:
    """One line on stderr."""
    click.echo(line, err=True)


# ---------------------------------------------------------------- run


def print_plan(plan: Any, log_root: str, out: Out = say) -> None:
    out(f"plan: {len(plan.cells)} cell(s) over {len(plan.deployments)} endpoint(s); nothing will be sent (dry run)")
    out("endpoints:")
    for dep in plan.deployments:
        model = dep.model or "(asked from GET /models at run time)"
        out(f"  multiplier {dep.multiplier.label:>6}  {dep.url}  key {dep.key_display}  model {model}")
    out("cells:")
    for cell in plan.cells:
        args = json.dumps(cell.task_args, sort_keys=True)
        gen = json.dumps(cell.generate, sort_keys=True)
        out(
            f"  {cell.label:<22} m={cell.multiplier.label:>6}  {cell.eval_name}  task_args={args}  generate={gen}"
            + (f"  model_roles={json.dumps(cell.model_roles)}" if cell.model_roles else "")
        )
        out(f"  {'':<22} -> {join_path(log_root, cell.folder)}/")
    opts = plan.options
    out(
        f"options: limit={opts.limit} max_connections={opts.max_connections} per endpoint"
        + (f" shard={opts.shard[0]}/{opts.shard[1]}" if opts.shard else "")
    )
    from ..core.plan import server_connections

    out("connections per server:")
    for server in server_connections(plan.deployments, opts):
        out(f"  {server.describe()}")
    for warning in plan.warnings:
        out(f"warning: {warning}")
    print_sandbox_warning(plan, out)


def duration(seconds: float | None) -> str:
    """3 s, 4m 05s, 2h 03m."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def rate_text(rate: float | None) -> str:
    if rate is None:
        return "- samples/s"
    return f"{rate:.2f} samples/s" if rate < 10 else f"{rate:.0f} samples/s"


def trouble(progress: Any) -> str:
    """Errors and retries of a running cell, with the first error's text (keys masked), or ""."""
    if not (progress.errors or progress.retries):
        return ""
    text = f"; {progress.errors} errors, {progress.retries} retries"
    return text + (f", first error: {progress.first_error}" if progress.first_error else "")


def progress_line(progress: Any, now: float | None = None) -> str:
    """A running cell, as `run` prints it where there is no terminal: done/total, rate and ETA as of `now`."""
    return (
        f"[multiplier {progress.multiplier}] {progress.label}: {progress.done}/{progress.total} samples, "
        f"{rate_text(progress.rate_at(now))}, ETA {duration(progress.eta_at(now))}{trouble(progress)}"
    )


def print_shared_servers(plan: Any, out: Out = say) -> None:
    """Before a run: each server that several multipliers share, with the connections it gets."""
    from ..core.plan import server_connections

    for server in server_connections(plan.deployments, plan.options):
        if len(server.multipliers) > 1:
            out(f"server {server.describe()}")


def print_sandbox_warning(plan: Any, out: Out = error) -> None:
    local = sorted({c.benchmark for c in plan.cells if c.sandbox == "local"})
    if local:
        out(
            f"WARNING: sandbox=local: {', '.join(local)} will execute model-written code directly on this "
            "machine, with your user's permissions. Use --sandbox docker where Docker is available."
        )


def summary_lines(result: Any) -> list[str]:
    """The table `run` ends with: one row per cell, then the counts (a RunResult)."""
    rows = sorted(
        result.outcomes, key=lambda o: (o.cell.category, o.cell.benchmark, o.cell.subset, o.cell.multiplier.value)
    )
    lines = ["", f"{'benchmark':<22} {'multiplier':>10}  {'status':<9} {'samples':>9}  detail"]
    for o in rows:
        samples = f"{o.completed}/{o.total}"
        detail = o.headline if o.status == "success" else (o.error or "")
        lines.append(f"{o.cell.label:<22} {o.cell.multiplier.label:>10}  {o.status:<9} {samples:>9}  {detail}")
    done = sum(1 for o in rows if o.status == "success")
    lines.append(f"\n{done} done, {len(rows) - done} failed, in {result.seconds:.0f} s")
    return lines


def print_summary(result: Any, out: Out = say) -> None:
    for line in summary_lines(result):
        out(line)


def print_adaptive_cells(study: Any, out: Out = say) -> None:
    """An adaptive study's cells (results.adaptive): state, samples used, interval, why."""
    for cell in sorted(study.cells.values(), key=lambda c: (c.benchmark, c.subset, c.multiplier_value)):
        if cell.multiplier_value == 0:
            continue
        interval = "" if math.isnan(cell.low) else f", mean paired harm in [{cell.low:+.4f}, {cell.high:+.4f}]"
        out(
            f"adaptive: {cell_label(cell.benchmark, cell.subset)} at multiplier {cell.multiplier}: {cell.state}, "
            f"{cell.done}/{cell.population or '?'} samples{interval} ({cell.reason})"
        )


# ---------------------------------------------------------------- aggregate and report


def print_flags(flags: Sequence[Any], rows: Sequence[dict[str, Any]] | None = None, out: Out = say) -> None:
    """Cells to check before trusting the numbers (steerbench.results.flags), one line each; with
    the aggregate's rows, missing cells are grouped (one line per benchmark, or for the whole grid)."""
    from ..results.flags import grouped

    lines = grouped(flags, rows) if rows is not None else list(flags)
    if flags:
        out(f"{len(flags)} flag(s): check these cells before trusting the numbers")
    for flag in lines:
        out(f"flag: {flag}")


def print_skipped(skipped: Iterable[str], out: Out = error) -> None:
    for reason in skipped:
        out(f"warning: skipped unreadable log {reason}")


# ---------------------------------------------------------------- status


def format_grid(status: Any) -> list[str]:
    """The grid as text lines: one row per benchmark (subset), one column per multiplier."""
    row_labels = [cell_label(b, s) for b, s, _ in status.rows]
    first = max([len("benchmark"), *map(len, row_labels)])
    texts = {(c.benchmark, c.subset, multiplier_sort_key(c.multiplier)): c.short for c in status.cells}
    width = max([6, *(len(m) for m in status.multipliers), *(len(t) for t in texts.values())])
    lines = [f"{'benchmark':<{first}}  " + "  ".join(f"{m:>{width}}" for m in status.multipliers)]
    for (benchmark, subset, _), label in zip(status.rows, row_labels):
        values = [texts.get((benchmark, subset, multiplier_sort_key(m)), "") for m in status.multipliers]
        lines.append(f"{label:<{first}}  " + "  ".join(f"{v:>{width}}" for v in values))
    return lines


def print_status(status: Any, out: Out = say) -> None:
    from ..results.status import STATES

    out(f"log root: {status.log_root}")
    if not status.cells:
        out(
            "no logs and no planned cells (is this the right --log-root, with deployments.jsonl and benchmarks.jsonl here?)"
        )
        return
    for line in format_grid(status):
        out(line)
    counts = status.counts()
    out("")
    out(f"{len(status.cells)} cell(s): " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    for cell in status.cells:
        if cell.state == "failed":
            out(f"failed: {cell.key.where}: {cell.error}")
    for cell in status.cells:
        if cell.adaptive_state not in (None, "baseline"):
            interval = (
                ""
                if cell.adaptive_low is None
                else f", mean paired harm in [{cell.adaptive_low:+.4f}, {cell.adaptive_high:+.4f}]"
            )
            out(
                f"adaptive: {cell.key.where}: {cell.adaptive_state}, {cell.adaptive_samples}/"
                f"{cell.adaptive_population or '?'} samples{interval} ({cell.adaptive_reason})"
            )
    for cell in status.cells:
        if cell.state == "running" and cell.done is not None:
            out(
                f"running: {cell.key.where}: {cell.done}/{cell.total_samples} samples, {rate_text(cell.rate)}, "
                f"ETA {duration(cell.eta_seconds)}{trouble(cell)}"
            )
    if not status.running_from_locks and counts["running"]:
        out("note: object stores have no locks, so a run that was killed also shows as running until it is resumed")
    for reason in status.skipped:
        out(f"warning: skipped unreadable log {reason}")


# ---------------------------------------------------------------- check


def print_check_report(report: Any, prompts: int, out: Out = say) -> None:
    out("endpoints (GET /models with each key):")
    for status in report.endpoints:
        dep = status.deployment
        latency = f"{status.latency_ms:.0f} ms" if status.latency_ms is not None else "-"
        if status.ok:
            out(
                f"  multiplier {dep.multiplier.label:>6}  ok      model {status.served_model}  latency {latency}  {dep.url}"
            )
        else:
            reason = (status.problem or "").split(": ", 1)[-1]
            out(f"  multiplier {dep.multiplier.label:>6}  FAILED  {reason}")
    for checked in report.checked:
        out(f"{checked.item + ':':<18} {'ok' if checked.ok else 'FAILED':<6}  {checked.detail}")
    if report.answers:
        out(f"steering sanity check: {prompts} prompt(s) at temperature 0 to each endpoint")
        for answers in report.answers:
            first = " ".join(answers.answers[0].split()) if answers.answers else ""
            out(f'  multiplier {answers.multiplier:>6}  {answers.latency_ms:.0f} ms per answer  "{first[:60]}"')
    if report.pairs:
        out("answer similarity between multipliers (1.00 = identical):")
        for line in similarity_matrix(report):
            out("  " + line)
    for warning in report.warnings:
        out(f"warning: {warning}")
    if report.problems:
        out(f"check failed: {len(report.problems)} problem(s)")
        for problem in report.problems:
            out(f"  - {problem}")
    else:
        out("check passed")


def similarity_matrix(report: Any) -> list[str]:
    labels = [a.multiplier for a in report.answers]
    score = {(p.first, p.second): p.similarity for p in report.pairs}
    score.update({(b, a): s for (a, b), s in score.items()})
    width = max(6, *(len(label) for label in labels))
    lines = [" " * width + "".join(f"{label:>{width + 2}}" for label in labels)]
    for a in labels:
        cells = ["-" if a == b else f"{score[(a, b)]:.2f}" for b in labels]
        lines.append(f"{a:>{width}}" + "".join(f"{c:>{width + 2}}" for c in cells))
    return lines


# ---------------------------------------------------------------- prefetch


def print_prefetch(statuses: Sequence[Any], summary: str, out: Out = say) -> None:
    width = max(len(s.label) for s in statuses)
    for s in statuses:
        out(f"  {s.label:<{width}}  {s.state:<10}  {s.eval_name}" + (f"  {s.detail}" if s.detail else ""))
    out(summary)
