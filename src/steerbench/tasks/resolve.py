"""Resolving benchmarks.jsonl's `eval_name` to Inspect task functions, without creating them.

Creating a task loads its dataset (network); here we only look the function up and
read its signature, so that unknown tasks, unknown arguments and `shots` that cannot
take effect are rejected before anything runs.
"""

from __future__ import annotations

import inspect as pyinspect
import re
from typing import Any

from ..core.config import Benchmark, ConfigError
from ..core.signature import TaskSignature, fewshot_default
from .source import static_signature

# Parameter names that tasks use for the number of few-shot examples.
FEWSHOT_PARAMS = ("fewshot", "num_fewshot", "n_shots", "num_shots", "shots", "k_shot", "few_shot")
# Parameter names that tasks use for the model that grades (when they don't use model roles).
GRADER_PARAMS = ("scorer_model", "grader_model", "judge_model", "grader")
SANDBOX_PARAMS = ("sandbox", "sandbox_type")


def imported_signature(eval_name: str) -> tuple[dict[str, Any], bool] | None:
    from ..boundary.tasks import find_task_function

    try:
        fn = find_task_function(eval_name)
    except Exception:
        return None
    if fn is None:
        return None
    sig = pyinspect.signature(fn)
    params = {
        name: p.default
        for name, p in sig.parameters.items()
        if p.kind not in (pyinspect.Parameter.VAR_KEYWORD, pyinspect.Parameter.VAR_POSITIONAL)
    }
    accepts_any = any(p.kind == pyinspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return params, accepts_any


def task_signature(eval_name: str) -> TaskSignature | None:
    # Read from source first (no Inspect import: dry runs stay fast); import when unsure.
    static = static_signature(eval_name)
    found = (static.params, static.accepts_any) if static else imported_signature(eval_name)
    if found is None:
        return None
    params, accepts_any = found
    pick = lambda names: next((n for n in names if n in params), None)  # noqa: E731
    return TaskSignature(
        eval_name=eval_name,
        params=params,
        accepts_any=accepts_any,
        fewshot_param=pick(FEWSHOT_PARAMS),
        grader_param=pick(GRADER_PARAMS),
        sandbox_param=pick(SANDBOX_PARAMS),
    )


def resolve_benchmarks(benchmarks: list[Benchmark]) -> dict[str, TaskSignature]:
    """Look up every benchmark's task and check its arguments; raise ConfigError on the first problem."""
    signatures: dict[str, TaskSignature] = {}
    for bench in benchmarks:
        sig = task_signature(bench.eval_name)
        if sig is None:
            raise ConfigError(
                bench.source,
                f"unknown Inspect task {bench.eval_name!r} (is its package installed? "
                "use a registry name like 'inspect_evals/gsm8k' or 'path/file.py@task')",
                bench.line,
                "eval_name",
            )
        for field_name, args in [("task_args", bench.task_args)] + [
            (f"subsets[{i}]", s.task_args) for i, s in enumerate(bench.subsets)
        ]:
            for arg in args:
                if not sig.accepts(arg):
                    raise ConfigError(
                        bench.source,
                        f"task {bench.eval_name} has no argument {arg!r} (it takes: {', '.join(sig.params) or 'none'})",
                        bench.line,
                        field_name,
                    )
        check_shots(bench, sig)
        signatures[bench.name] = sig
    return signatures


def check_shots(bench: Benchmark, sig: TaskSignature) -> None:
    if bench.shots is None or sig.fewshot_param is not None:
        if sig.fewshot_param and sig.fewshot_param in bench.task_args:
            raise ConfigError(
                bench.source,
                f"set the number of examples with 'shots', not task_args.{sig.fewshot_param}",
                bench.line,
                "task_args",
            )
        return
    # No few-shot parameter: only the number the task is built for is true.
    built_for = re.search(r"(\d+)_shot", bench.eval_name)
    fixed = int(built_for.group(1)) if built_for else 0
    if bench.shots != fixed:
        raise ConfigError(
            bench.source,
            f"shots={bench.shots} cannot take effect: task {bench.eval_name} has no few-shot parameter "
            f"(it always runs {fixed}-shot)",
            bench.line,
            "shots",
        )


__all__ = ["TaskSignature", "check_shots", "fewshot_default", "resolve_benchmarks", "task_signature"]
