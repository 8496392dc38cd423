"""Checks made before any eval runs: task dependencies, grader credentials, the log root, offline mode."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from ..core.config import Benchmark
from ..logs.errors import first_line

# Extra modules some inspect_evals tasks import when they are created, and how to get them.
TASK_DEPENDENCIES: dict[str, tuple[str, str]] = {
    "inspect_evals/ifeval": (
        "instruction_following_eval",
        "it is not on PyPI: pip install git+https://github.com/josejg/instruction_following_eval",
    ),
}

# Hugging Face's switches for working from the local caches only.
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")

# Provider prefix of a grader model -> environment variable holding its key.
PROVIDER_KEYS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "google": "GOOGLE_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "grok": "XAI_API_KEY",
    "together": "TOGETHER_API_KEY",
}


def is_offline(environ: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """Whether this process may only use the local dataset caches (HF_HUB_OFFLINE and the like)."""
    environ = os.environ if environ is None else environ
    return any(environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE") for name in OFFLINE_SWITCHES)


def missing_dependency(eval_name: str) -> str | None:
    """What a task needs that is not installed ("needs the Python module ...; how to get it"), or None."""
    need = TASK_DEPENDENCIES.get(eval_name)
    if need and importlib.util.find_spec(need[0]) is None:
        return f"needs the Python module {need[0]!r}; {need[1]}"
    return None


def dependency_problems(benchmarks: list[Benchmark]) -> list[str]:
    return [f"{bench.name} {problem}" for bench in benchmarks if (problem := missing_dependency(bench.eval_name))]


def grader_problems(benchmarks: list[Benchmark], environ: dict[str, str] | None = None) -> list[str]:
    environ = dict(os.environ) if environ is None else environ
    problems = []
    for bench in benchmarks:
        if not bench.grader or bench.grader == "self":
            continue
        provider = bench.grader.split("/", 1)[0]
        var = PROVIDER_KEYS.get(provider)
        if var and not environ.get(var):
            problems.append(f"{bench.name} is graded by {bench.grader}, which needs {var} to be set")
    return problems


def log_root_problem(log_root: str) -> str | None:
    """Can this run write its logs? Found now rather than after the first eval has run."""
    from ..core.paths import is_remote

    if is_remote(log_root):
        return _remote_root_problem(log_root)
    existing = os.path.abspath(log_root)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        return f"log root {log_root}: {existing} is not a writable folder"
    return None


def _remote_root_problem(log_root: str) -> str | None:
    # write and delete one small object: the same thing Inspect will do, so a missing bucket,
    # wrong endpoint or read-only credentials show up here
    import uuid

    from ..boundary.filesystem import filesystem

    probe = f"{log_root.rstrip('/')}/.steerbench-write-check-{uuid.uuid4().hex}"
    try:
        fs = filesystem(log_root)
        fs.touch(probe)
        fs.rm(probe)
    except Exception as e:
        detail = first_line(str(e), "no detail")
        return f"log root {log_root} is not writable ({type(e).__name__}: {detail})"
    return None


# ---------------------------------------------------------------- what was checked, as `check` prints it


@dataclass(frozen=True)
class Checked:
    """One preflight item that `steerbench check` prints: what it is, and how it went."""

    item: str  # "task dependencies", "grader keys", "log root"
    ok: bool
    detail: str  # what was found (ok) or the problem (not ok)


def dependency_checks(benchmarks: list[Benchmark]) -> list[Checked]:
    problems = dependency_problems(benchmarks)
    if problems:
        return [Checked("task dependencies", False, problem) for problem in problems]
    extra = [
        f"{b.name}'s {TASK_DEPENDENCIES[b.eval_name][0]} is installed"
        for b in benchmarks
        if b.eval_name in TASK_DEPENDENCIES
    ]
    return [
        Checked(
            "task dependencies",
            True,
            f"{len(benchmarks)} task(s); " + ("; ".join(extra) if extra else "none needs an extra module"),
        )
    ]


def grader_checks(benchmarks: list[Benchmark], environ: dict[str, str] | None = None) -> list[Checked]:
    environ = dict(os.environ) if environ is None else environ
    problems = grader_problems(benchmarks, environ)
    if problems:
        return [Checked("grader keys", False, problem) for problem in problems]
    graded: dict[str, list[str]] = {}
    for bench in benchmarks:
        if bench.grader and bench.grader != "self":
            graded.setdefault(bench.grader, []).append(bench.name)
    if not graded:
        return [Checked("grader keys", True, "none needed (no benchmark has a grader model of its own)")]
    found = []
    for grader, names in graded.items():
        var = PROVIDER_KEYS.get(grader.split("/", 1)[0])
        key = f"{var} is set" if var else "its provider's key variable is Inspect's to check"
        found.append(f"{grader} for {', '.join(names)}: {key}")
    return [Checked("grader keys", True, "; ".join(found))]


def log_root_checks(log_root: str | None) -> list[Checked]:
    if log_root is None:
        return []
    problem = log_root_problem(log_root)
    return [Checked("log root", problem is None, problem or f"{log_root} can be written")]
