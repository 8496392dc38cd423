"""Running a plan: one Inspect eval set per (category, multiplier) log folder.

Work is spread over worker processes, one multiplier per worker at a time, so each
endpoint has exactly one connection pool of `max_connections` and both cores work.
Resume, retries and sample reuse are Inspect's eval sets; a log that failed is never
counted as done.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import Multiplier
from .plan import Cell, Plan
from .redaction import Redactor

STEERBENCH_METADATA = "steerbench"


@dataclass(frozen=True)
class EndpointJob:
    """Everything a worker needs for one multiplier. The key travels in memory only."""

    multiplier: Multiplier
    url: str
    key: str = field(repr=False)
    served_model: str
    cells: tuple[Cell, ...]
    log_root: str
    limit: int | None
    max_connections: int
    all_keys: tuple[str, ...] = field(repr=False, default=())
    display: str = "none"


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    status: str  # success | error | cancelled | started | not run
    completed: int
    total: int
    log_file: str | None
    error: str | None
    headline: str | None = None


@dataclass(frozen=True)
class RunResult:
    outcomes: tuple[CellOutcome, ...]
    seconds: float

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status != "success"]


def inspect_model_name(multiplier: Multiplier, served_model: str) -> str:
    """`openai-api/<provider per multiplier>/<served model>`: chat completions only, one
    Inspect identity per endpoint; requests still carry the served model's name."""
    return f"openai-api/{multiplier.provider}/{served_model}"


def cell_metadata(cell: Cell) -> dict[str, Any]:
    return {
        "benchmark": cell.benchmark,
        "subset": cell.subset,
        "category": cell.category,
        "multiplier": cell.multiplier.label,
        "multiplier_value": cell.multiplier.value,
        "shots": cell.shots,
        "eval_name": cell.eval_name,
    }


def join_path(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


# ---------------------------------------------------------------- inside a worker


def _make_task(cell: Cell, model_roles: dict[str, Any]) -> Any:
    from inspect_ai import task_with
    from inspect_ai._eval.loader import load_task_spec
    from inspect_ai.model import GenerateConfig

    (task,) = load_task_spec(cell.eval_name, dict(cell.task_args))
    settings = dict(cell.generate)
    # our "timeout" is per request attempt: a slow attempt is abandoned and retried
    if "timeout" in settings:
        settings["attempt_timeout"] = settings.pop("timeout")
    config = task.config.merge(GenerateConfig(**settings))
    if "max_tokens" not in cell.generate and task.config.max_tokens is None:
        config.max_tokens = None
    changes: dict[str, Any] = dict(
        config=config,
        metadata={**(task.metadata or {}), STEERBENCH_METADATA: cell_metadata(cell)},
    )
    if model_roles:
        changes["model_roles"] = model_roles
    if cell.sandbox and task.sandbox is not None and "sandbox" not in cell.task_args:
        changes["sandbox"] = cell.sandbox
    return task_with(task, **changes)


def _outcome_from_log(cell: Cell, log: Any) -> CellOutcome:
    total = completed = 0
    if log.results is not None:
        total = log.results.total_samples
        completed = log.results.completed_samples
    error = None
    if log.error is not None:
        error = (log.error.message or "").strip().splitlines()[0] if log.error.message else "error"
    headline = None
    if log.results is not None and log.results.scores:
        score = log.results.scores[0]
        if score.metrics:
            name, metric = next(iter(score.metrics.items()))
            headline = f"{name}={metric.value:.3f}"
    return CellOutcome(cell, log.status, completed, total, log.location, error, headline)


def _run_folder(job: EndpointJob, model: Any, folder: str, cells: list[Cell], redactor: Redactor) -> list[CellOutcome]:
    from inspect_ai import eval_set
    from inspect_ai.model import get_model

    log_dir = join_path(job.log_root, *folder.split("/"))
    tasks = []
    for cell in cells:
        roles = {role: get_model(name) for role, name in cell.model_roles.items()}
        tasks.append(_make_task(cell, roles))
    try:
        _, logs = eval_set(
            tasks,
            log_dir=log_dir,
            model=model,
            log_dir_allow_dirty=True,  # one folder holds every benchmark of a category
            limit=job.limit,
            max_tasks=len(tasks),
            retry_attempts=3,
            retry_immediate=True,
            fail_on_error=0.05,
            continue_on_fail=True,
            retry_on_error=3,
            display=job.display,  # type: ignore[arg-type]
            score_display=False,
            log_realtime=False,
            log_format="eval",
            log_level="error",
        )
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one folder failing must not stop the others
        message = redactor.text(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        return [CellOutcome(c, "error", 0, 0, None, f"{type(e).__name__}: {message}") for c in cells]
    finally:
        redactor.scrub_logs(log_dir)
    by_label: dict[tuple[str, str], Any] = {}
    for log in logs:
        meta = (log.eval.metadata or {}).get(STEERBENCH_METADATA, {})
        by_label[(meta.get("benchmark"), meta.get("subset"))] = log
    outcomes = []
    for cell in cells:
        log = by_label.get((cell.benchmark, cell.subset))
        if log is None:
            outcomes.append(CellOutcome(cell, "not run", 0, 0, None, "no log was produced"))
        else:
            outcome = _outcome_from_log(cell, log)
            outcomes.append(
                CellOutcome(**{**outcome.__dict__, "error": redactor.text(outcome.error) if outcome.error else None})
            )
    return outcomes


def run_endpoint_job(job: EndpointJob, report: Callable[[str], None] | None = None) -> list[CellOutcome]:
    """Run every cell of one multiplier, folder by folder. Safe to call in a worker process."""
    from inspect_ai.model import GenerateConfig, get_model

    redactor = Redactor(job.all_keys or (job.key,))
    redactor.install_logging_filter()
    say = report or (lambda line: print(line, flush=True))
    model = get_model(
        inspect_model_name(job.multiplier, job.served_model),
        base_url=job.url,
        api_key=job.key,
        config=GenerateConfig(max_connections=job.max_connections),
        memoize=False,
    )
    folders: dict[str, list[Cell]] = {}
    for cell in job.cells:
        folders.setdefault(cell.folder, []).append(cell)
    outcomes: list[CellOutcome] = []
    for folder, cells in folders.items():
        started = time.perf_counter()
        say(f"[multiplier {job.multiplier.label}] {folder}: running {', '.join(c.label for c in cells)}")
        results = _run_folder(job, model, folder, cells, redactor)
        for o in results:
            detail = o.headline or (o.error or "")
            say(
                f"[multiplier {job.multiplier.label}] {o.cell.label}: {o.status} "
                f"{o.completed}/{o.total} samples {detail} ({time.perf_counter() - started:.0f} s)"
            )
        outcomes.extend(results)
    return outcomes


def _worker_entry(job: EndpointJob) -> list[CellOutcome]:
    # worker processes: keep Inspect quiet and the parent's terminal readable
    os.environ.setdefault("INSPECT_LOG_LEVEL", "error")
    return run_endpoint_job(job)


def execute(jobs: list[EndpointJob], workers: int) -> RunResult:
    started = time.perf_counter()
    outcomes: list[CellOutcome] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            outcomes.extend(run_endpoint_job(job))
    else:
        import multiprocessing as mp

        context = mp.get_context("spawn")
        with context.Pool(processes=min(workers, len(jobs)), maxtasksperchild=1) as pool:
            try:
                for result in pool.imap_unordered(_worker_entry, jobs):
                    outcomes.extend(result)
            except KeyboardInterrupt:
                pool.terminate()
                raise
    return RunResult(tuple(outcomes), time.perf_counter() - started)


def build_jobs(
    plan: Plan,
    log_root: str,
    keys: dict[float, str],
    served_models: dict[float, str],
    display: str = "none",
) -> list[EndpointJob]:
    all_keys = tuple(keys.values())
    jobs = []
    for value, cells in plan.by_multiplier().items():
        deployment = next(d for d in plan.deployments if d.multiplier.value == value)
        jobs.append(
            EndpointJob(
                multiplier=deployment.multiplier,
                url=deployment.url,
                key=keys[value],
                served_model=served_models[value],
                cells=tuple(cells),
                log_root=log_root,
                limit=plan.options.limit,
                max_connections=plan.options.max_connections,
                all_keys=all_keys,
                display=display,
            )
        )
    return jobs


def default_workers(jobs: int) -> int:
    return max(1, min(jobs, os.cpu_count() or 1))


def print_summary(result: RunResult, out: Callable[[str], None] = lambda s: print(s, file=sys.stdout)) -> None:
    rows = sorted(result.outcomes, key=lambda o: (o.cell.category, o.cell.benchmark, o.cell.subset, o.cell.multiplier.value))
    out("")
    out(f"{'benchmark':<22} {'multiplier':>10}  {'status':<9} {'samples':>9}  detail")
    for o in rows:
        samples = f"{o.completed}/{o.total}"
        detail = o.headline if o.status == "success" else (o.error or "")
        out(f"{o.cell.label:<22} {o.cell.multiplier.label:>10}  {o.status:<9} {samples:>9}  {detail}")
    done = sum(1 for o in rows if o.status == "success")
    out(f"\n{done} done, {len(rows) - done} failed, in {result.seconds:.0f} s")
