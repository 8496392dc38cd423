"""Running a plan: one Inspect eval set per (category, multiplier) log folder, in worker processes.

Work is spread over worker processes, one multiplier per worker at a time, so each
endpoint has exactly one connection pool of `max_connections` and both cores work.
Resume, retries and sample reuse are Inspect's eval sets; a log that failed is never
counted as done.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field
from traceback import format_exc
from typing import Any
from collections.abc import Callable

from ..core.config import Multiplier, model_display_name
from ..core.paths import join_path
from ..core.plan import Cell, Plan, connection_limits
from ..logs.contract import STEERBENCH_METADATA, cell_metadata, steerbench_metadata
from ..logs.error_logs import explain, write_error_logs
from ..logs.errors import first_line, log_error
from .locks import one_run_per_cell
from .output_health import start_recording
from .preflight import is_offline
from .progress import ProgressTracker, RunMonitor, Watcher, install_request_watch, run_folders
from .progress import activate as activate_progress
from .redaction import Redactor, environment_secrets
from .replay import ReplayJournal, install as install_replay


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
    extra_body: dict[str, Any] | None = None  # merged into every request (per-request steering)
    identity: str = ""  # the deployment (URL + multiplier): several may share one URL
    all_keys: tuple[str, ...] = field(repr=False, default=())
    shard: tuple[int, int] | None = None  # (i, n): shards of one multiplier may run side by side
    offline: bool = False  # HF_HUB_OFFLINE: a dataset missing from the cache fails its cell at once
    # test and demo switches (RunOptions), never read from the environment:
    retry_wait: float | None = None  # seconds between request retries instead of Inspect's backoff
    trust_gpqa_sha256: str | None = None  # the synthetic GPQA CSV, trusted (demo, tests)
    progress: bool = True  # progress files for run and status (off only to measure what they cost)


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
    """`openai-api/<provider per multiplier>/<served model's display name>`: chat completions
    only, one Inspect identity per endpoint. A served model named by a local path gets its
    folder's name here (no `//`, no home directory in logs); requests still carry the served name."""
    return f"openai-api/{multiplier.provider}/{model_display_name(served_model)}"


# ---------------------------------------------------------------- inside a worker


def _make_task(cell: Cell, model_roles: dict[str, Any]) -> Any:
    from inspect_ai import task_with
    from inspect_ai.model import GenerateConfig

    from ..boundary.tasks import load_task_spec

    (task,) = load_task_spec(cell.eval_name, dict(cell.task_args))
    settings = dict(cell.generate)
    # our "timeout" is per request attempt: a slow attempt is abandoned and retried
    if "timeout" in settings:
        settings["attempt_timeout"] = settings.pop("timeout")
    config = task.config.merge(GenerateConfig(**settings))
    if "max_tokens" not in cell.generate and task.config.max_tokens is None:
        config.max_tokens = None
    metadata = cell_metadata(cell)
    changes: dict[str, Any] = dict(config=config)
    if cell.adaptive is not None:  # one batch of an adaptive study: its positions of the order only
        changes["dataset"], metadata["adaptive"]["population"] = adaptive_batch(task.dataset, cell)
    changes["metadata"] = {**(task.metadata or {}), STEERBENCH_METADATA: metadata}
    if model_roles:
        changes["model_roles"] = model_roles
    if cell.sandbox and task.sandbox is not None and "sandbox" not in cell.task_args:
        changes["sandbox"] = cell.sandbox
    if cell.epochs:  # benchmarks.jsonl asks for another number than the task's
        changes["epochs"] = cell.epochs
    return task_with(task, **changes)


def adaptive_batch(dataset: Any, cell: Cell) -> tuple[Any, int]:
    """The samples of the cell's batch (its positions of the benchmark's order, core.adaptive) and
    the benchmark's size. Samples without an id get Inspect's own (position + 1) first, so the ids,
    and so the order, are the same in every multiplier's process."""
    from ..core.adaptive import sample_order

    assert cell.adaptive is not None
    samples = list(dataset)
    for position, sample in enumerate(samples):
        if sample.id is None:
            sample.id = position + 1
    order = sample_order([s.id for s in samples], cell.adaptive.seed, cell.benchmark, cell.subset)
    wanted = set(order[cell.adaptive.start : cell.adaptive.stop])
    return dataset.filter(lambda sample: str(sample.id) in wanted), len(samples)


def _outcome_from_log(cell: Cell, log: Any) -> CellOutcome:
    total = completed = 0
    if log.results is not None:
        total = log.results.total_samples
        completed = log.results.completed_samples
    error, failures = log_error(log)
    if failures is not None:
        completed, total = failures.total - failures.failed, failures.total
    headline = None
    if log.results is not None and log.results.scores:
        score = log.results.scores[0]
        if score.metrics:
            name, metric = next(iter(score.metrics.items()))
            headline = f"{name}={metric.value:.3f}"
    return CellOutcome(cell, log.status, completed, total, log.location, error, headline)


def _create_task(cell: Cell, model: Any) -> Any:
    """The cell's task, created as inside an eval of `model`: a task that asks for "the
    evaluated model" while it is created (Sycophancy's grader with grader "self") gets this
    endpoint's model, never none (an error) nor one an earlier eval left active."""
    from inspect_ai.model import get_model

    from ..boundary.tasks import as_active_model

    def create() -> Any:
        roles = {role: get_model(name) for role, name in cell.model_roles.items()}
        return _make_task(cell, roles)

    return as_active_model(model, create)


def _failed(log_dir: str, cells: list[Cell], model: Any, error: Exception, redactor: Redactor) -> list[CellOutcome]:
    """Outcomes for cells that failed before Inspect wrote a log for them (their task could
    not be created, or the eval set could not start, e.g. no Docker engine for a docker
    sandbox). Each gets an error log, so aggregate, status and report show "error", not "missing"."""
    message = redactor.text(first_line(str(error), type(error).__name__))
    reason = explain(f"{type(error).__name__}: {message}")
    try:
        locations: list[str | None] = list(
            write_error_logs(
                log_dir,
                cells,
                str(model),
                reason,
                redactor.text(format_exc()),
                lambda c: {STEERBENCH_METADATA: cell_metadata(c)},
            )
        )
    except Exception:  # the summary still reports the failure
        locations = [None] * len(cells)
    return [CellOutcome(c, "error", 0, 0, loc, reason) for c, loc in zip(cells, locations)]


# cells another run holds are left out of the folder's eval set (execution.locks)
@one_run_per_cell(lambda cell, line: CellOutcome(cell, "skipped", 0, 0, None, line))
def _run_folder(
    job: EndpointJob,
    model: Any,
    folder: str,
    cells: list[Cell],
    redactor: Redactor,
    journal: ReplayJournal,
    tracker: ProgressTracker,
) -> list[CellOutcome]:
    from ..boundary.eval_set_manifest import eval_set  # Inspect's; shards can share a folder's manifest

    log_dir = join_path(job.log_root, *folder.split("/"))
    tasks, ready, failed = [], [], []
    for cell in cells:
        try:  # creating a task loads its dataset: one that cannot be had fails this cell only
            tasks.append(_create_task(cell, model))
            ready.append(cell)
        except Exception as e:
            failed.extend(_failed(log_dir, [cell], model, e, redactor))
    if not tasks:
        redactor.scrub_logs(log_dir)
        return failed
    start_recording()  # each sample's output health, into a sidecar next to its log
    journal.open(log_dir)
    tracker.open_folder(log_dir)
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
            display="none",
            score_display=False,
            # Realtime logging keeps Inspect's sample buffer (SQLite, every event of every
            # sample), from which a re-run after a SIGKILL recovers the finished samples not
            # yet written to the log. Where the replay journal does that job it is off: it
            # costs ~4 ms of CPU per sample, 17 -> 13 ms/sample (bench/README.md).
            log_realtime=not journal.active,
            log_format="eval",
            log_level="error",
        )
    except KeyboardInterrupt:
        journal.close(finished=False)
        raise
    except Exception as e:  # one folder failing must not stop the others
        journal.close(finished=False)
        return failed + _failed(log_dir, ready, model, e, redactor)
    finally:
        tracker.close_folder()
        redactor.scrub_logs(log_dir)
    journal.close(finished=True)  # the logs now hold every finished sample
    by_label: dict[tuple[str | None, str | None], Any] = {}
    for log in logs:
        meta = steerbench_metadata(log) or {}
        by_label[(meta.get("benchmark"), meta.get("subset"))] = log
    outcomes = []
    for cell in ready:
        log = by_label.get((cell.benchmark, cell.subset))
        if log is None:
            outcomes.append(CellOutcome(cell, "not run", 0, 0, None, "no log was produced"))
        else:
            outcome = _outcome_from_log(cell, log)
            outcomes.append(
                CellOutcome(**{**outcome.__dict__, "error": redactor.text(outcome.error) if outcome.error else None})
            )
    return failed + outcomes


def run_endpoint_job(job: EndpointJob, report: Callable[[str], None] | None = None) -> list[CellOutcome]:
    """Run every cell of one multiplier, folder by folder. Safe to call in a worker process."""
    from inspect_ai.model import GenerateConfig, get_model

    redactor = Redactor(job.all_keys or (job.key,))
    redactor.install_logging_filter()
    if job.offline or job.trust_gpqa_sha256:
        # a dataset missing from the cache cannot come by retrying, so fail its cell now
        # rather than after inspect_evals' back-off of several minutes
        from ..boundary.offline import disable_dataset_retries

        disable_dataset_retries()
    if job.trust_gpqa_sha256:  # demo and tests: the tasks read steerbench's synthetic datasets
        from ..boundary.offline import trust_gpqa_csv

        trust_gpqa_csv(job.trust_gpqa_sha256)
    out = report or (lambda line: print(line, flush=True))

    def say(line: str) -> None:
        out(redactor.text(line))

    model = get_model(
        inspect_model_name(job.multiplier, job.served_model),
        base_url=job.url,
        api_key=job.key,
        config=GenerateConfig(max_connections=job.max_connections, extra_body=job.extra_body),
        memoize=False,
    )
    if model_display_name(job.served_model) != job.served_model:
        from ..boundary.inspect_state import send_model_name

        send_model_name(model, job.served_model)
    redactor.guard_model(model)  # keys echoed in response bodies are masked before Inspect sees them
    journal = ReplayJournal(job.identity or job.url, job.shard)
    install_replay(model, journal)  # a re-run after a kill gets finished answers from here
    if job.retry_wait is not None:
        from ..boundary.inspect_state import set_retry_wait

        set_retry_wait(model, job.retry_wait)
    tracker = ProgressTracker(job.shard, redactor.text, enabled=job.progress)
    if job.progress:
        install_request_watch(model, tracker)  # failing requests show in the progress while the run goes on
        activate_progress(tracker)
    folders: dict[str, list[Cell]] = {}
    for cell in job.cells:
        folders.setdefault(cell.folder, []).append(cell)
    outcomes: list[CellOutcome] = []
    prefix = f"[multiplier {job.multiplier.label}]"
    for folder, cells in folders.items():
        started = time.perf_counter()
        complete = complete_cells(join_path(job.log_root, *folder.split("/")), cells)
        if complete:  # a resumed run: Inspect's eval set does not run these again
            say(f"{prefix} {folder}: already complete: {', '.join(c.label for c in cells if c.key in complete)}")
        if len(complete) < len(cells):
            say(f"{prefix} {folder}: running {', '.join(c.label for c in cells if c.key not in complete)}")
        results = _run_folder(job, model, folder, cells, redactor, journal, tracker)
        if journal.replayed:
            say(
                f"{prefix} {folder}: {journal.replayed} answers came from the "
                "replay journal of an interrupted run, not from the endpoint"
            )
        for o in results:
            if o.cell.key in complete and o.status == "success":
                continue  # said above
            detail = o.headline or (o.error or "")
            say(
                f"{prefix} {o.cell.label}: {o.status} "
                f"{o.completed}/{o.total} samples {detail} ({time.perf_counter() - started:.0f} s)"
            )
        outcomes.extend(results)
    activate_progress(None)
    return outcomes


def complete_cells(log_dir: str, cells: list[Cell]) -> set[str]:
    """Keys of the cells whose latest log in the folder is a success with every sample, which a
    resumed eval set does not run again. Local folders only (elsewhere: none)."""
    folder = Path(log_dir.removeprefix("file://"))
    if "://" in log_dir.removeprefix("file://") or not folder.is_dir():
        return set()
    from ..logs.headers import read_log_headers

    locations = sorted(str(path) for path in folder.glob("*.eval"))
    latest: dict[tuple[str | None, str], Any] = {}
    for log in read_log_headers(locations):
        meta = None if isinstance(log, Exception) else steerbench_metadata(log)
        if meta:
            key = (meta.get("benchmark"), meta.get("subset", ""))
            if key not in latest or log.eval.created >= latest[key].eval.created:
                latest[key] = log
    done = set()
    for cell in cells:
        log = latest.get((cell.benchmark, cell.subset))
        results = getattr(log, "results", None)
        if (
            log is not None
            and log.status == "success"
            and results is not None
            and results.completed_samples >= results.total_samples
        ):
            done.add(cell.key)
    return done


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: a worker is killed when the `steerbench run` that started it dies,
    even by SIGKILL, so it cannot go on writing a log folder that a re-run then also writes
    (the run's locks die with the parent). Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


# a worker's lines go here when the parent watches the run (else to stdout)
_lines: Any = None


def _init_worker(parent_pid: int, lines: Any) -> None:
    global _lines
    _lines = lines
    _die_with_parent(parent_pid)


def _worker_entry(job: EndpointJob) -> list[CellOutcome]:
    # worker processes: keep Inspect quiet and the parent's terminal readable
    os.environ.setdefault("INSPECT_LOG_LEVEL", "error")
    return run_endpoint_job(job, report=_lines.put if _lines is not None else None)


def execute(jobs: list[EndpointJob], workers: int, monitor: RunMonitor | None = None) -> RunResult:
    """Run the jobs, in worker processes when there are several; `monitor` (if any) is shown the
    workers' lines and the cells' progress while they run, instead of the lines going to stdout."""
    started = time.perf_counter()
    outcomes: list[CellOutcome] = []
    folders = run_folders(jobs[0].log_root, [c for job in jobs for c in job.cells]) if jobs else []
    if workers <= 1 or len(jobs) <= 1:
        with Watcher(monitor, folders) if monitor else contextlib.nullcontext():
            for job in jobs:
                outcomes.extend(run_endpoint_job(job, report=monitor.line if monitor else None))
    else:
        from .workers import worker_context

        context = worker_context()  # Linux: forked after importing Inspect once (issue 5)
        lines = context.SimpleQueue() if monitor else None
        with context.Pool(
            processes=min(workers, len(jobs)), initializer=_init_worker, initargs=(os.getpid(), lines)
        ) as pool:
            # the watcher's thread starts once the workers are forked
            with Watcher(monitor, folders, lines) if monitor else contextlib.nullcontext():
                try:
                    for result in pool.imap_unordered(_worker_entry, jobs):
                        outcomes.extend(result)
                    # let workers exit on their own: terminate() would leak their semaphores
                    pool.close()
                    pool.join()
                except KeyboardInterrupt:
                    pool.terminate()
                    raise
    if monitor:
        monitor.close()
    return RunResult(tuple(outcomes), time.perf_counter() - started)


def build_jobs(
    plan: Plan,
    log_root: str,
    keys: dict[float, str],
    served_models: dict[float, str],
) -> list[EndpointJob]:
    all_keys = tuple(keys.values()) + environment_secrets()  # grader keys are masked too
    offline = is_offline()
    connections = connection_limits(plan.deployments, plan.options)
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
                max_connections=connections[value],
                extra_body=deployment.extra_body,
                identity=deployment.identity,
                all_keys=all_keys,
                shard=plan.options.shard,
                offline=offline,
                retry_wait=plan.options.retry_wait,
                trust_gpqa_sha256=plan.options.trust_gpqa_sha256,
            )
        )
    return jobs


def default_workers(jobs: int) -> int:
    from .workers import default_workers as one_per_multiplier

    return one_per_multiplier(jobs)
