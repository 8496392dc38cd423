"""Checks made before any eval runs: task dependencies and grader credentials."""

from __future__ import annotations

import importlib.util
import os

from .config import Benchmark

# Extra modules some inspect_evals tasks import when they are created, and how to get them.
TASK_DEPENDENCIES: dict[str, tuple[str, str]] = {
    "inspect_evals/ifeval": (
        "instruction_following_eval",
        "it is not on PyPI: pip install git+https://github.com/josejg/instruction_following_eval",
    ),
}

# Provider prefix of a grader model -> environment variable holding its key.
PROVIDER_KEYS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "google": "GOOGLE_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "grok": "XAI_API_KEY",
    "together": "TOGETHER_API_KEY",
}


def dependency_problems(benchmarks: list[Benchmark]) -> list[str]:
    problems = []
    for bench in benchmarks:
        need = TASK_DEPENDENCIES.get(bench.eval_name)
        if need and importlib.util.find_spec(need[0]) is None:
            problems.append(f"{bench.name} needs the Python module {need[0]!r}; {need[1]}")
    return problems


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
