"""From files on disk to a checked plan, and from a plan to a finished run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import load_benchmarks, load_deployments
from .endpoints import PreflightError, probe_all, require_served_models, resolve_keys
from .locks import multiplier_locks
from .plan import Plan, RunOptions, build_plan
from .preflight import dependency_problems, grader_problems
from .run import RunResult, build_jobs, default_workers, execute
from .tasks import resolve_benchmarks


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


def preflight(plan: Plan, benchmarks_path: str | Path) -> Preflight:
    """Endpoints answer with their keys; task dependencies import; grader keys are set."""
    keys = resolve_keys(list(plan.deployments))
    benchmarks = [b for b in load_benchmarks(benchmarks_path) if b.name in {c.benchmark for c in plan.cells}]
    problems = dependency_problems(benchmarks) + grader_problems(benchmarks)
    statuses = probe_all(list(plan.deployments), keys)
    problems += [s.problem for s in statuses if not s.ok and s.problem]
    if problems:
        raise PreflightError(problems)
    return Preflight(keys, require_served_models(statuses))


def run_study(plan: Plan, ready: Preflight, log_root: str, workers: int | None = None, display: str = "none") -> RunResult:
    jobs = build_jobs(plan, log_root, ready.keys, ready.served_models, display=display)
    with multiplier_locks(log_root, [d.multiplier for d in plan.deployments]):
        return execute(jobs, workers if workers is not None else default_workers(len(jobs)))
