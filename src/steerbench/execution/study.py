"""From files on disk to a checked plan, and from a plan to a finished run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import load_benchmarks, load_deployments
from ..core.plan import Plan, RunOptions, build_plan
from ..tasks.resolve import resolve_benchmarks
from .endpoints import EndpointStatus, PreflightError, probe_all, require_served_models, resolve_keys
from .locks import multiplier_locks
from .preflight import Checked, dependency_checks, grader_checks, log_root_checks
from .progress import RunMonitor
from .redaction import Redactor
from .run import RunResult, build_jobs, default_workers, execute


def load_plan(deployments_path: str | Path, benchmarks_path: str | Path, options: RunOptions) -> Plan:
    """Read and check both files and the options; raises ConfigError on the first mistake."""
    deployments = load_deployments(deployments_path)
    benchmarks = load_benchmarks(benchmarks_path)
    signatures = resolve_benchmarks(benchmarks)
    return build_plan(deployments, benchmarks, signatures, options)


@dataclass(frozen=True)
class Preflight:
    keys: dict[float, str]
    served_models: dict[float, str]


@dataclass(frozen=True)
class PreflightReport:
    """Everything the preflight found, failures included (`steerbench check` prints it all)."""

    keys: dict[float, str]
    endpoints: list[EndpointStatus]
    problems: list[str]  # one line each, never containing a key
    checked: list[Checked] = field(default_factory=list)  # task dependencies, grader keys, log root: fine or not


def preflight_report(plan: Plan, log_root: str | None = None) -> PreflightReport:
    """Endpoints answer with their keys; task dependencies import; grader keys are set;
    the log root (when given) can be written."""
    keys = resolve_keys(list(plan.deployments))
    benchmarks = plan.planned_benchmarks
    checked = dependency_checks(benchmarks) + grader_checks(benchmarks) + log_root_checks(log_root)
    problems = [c.detail for c in checked if not c.ok]
    statuses = probe_all(list(plan.deployments), keys)
    problems += [s.problem for s in statuses if not s.ok and s.problem]
    return PreflightReport(keys, statuses, problems, checked)


def preflight(plan: Plan, log_root: str | None = None) -> Preflight:
    report = preflight_report(plan, log_root)
    if report.problems:
        raise PreflightError(report.problems)
    return Preflight(report.keys, require_served_models(report.endpoints))


def run_study(
    plan: Plan, ready: Preflight, log_root: str, workers: int | None = None, monitor: RunMonitor | None = None
) -> RunResult:
    """Run the plan; `monitor` (steerbench.execution.progress.RunMonitor) sees its progress live."""
    jobs = build_jobs(plan, log_root, ready.keys, ready.served_models)
    # this process prints what workers report (and any traceback): mask keys here too
    Redactor(jobs[0].all_keys if jobs else ()).install_logging_filter()
    with multiplier_locks(log_root, [d.multiplier for d in plan.deployments], plan.options.shard):
        return execute(jobs, workers if workers is not None else default_workers(len(jobs)), monitor)
