"""Resolving benchmarks.jsonl's `eval_name` to Inspect task functions, without creating them.

Creating a task loads its dataset (network); here we only look the function up and
read its signature, so that unknown tasks, unknown arguments and `shots` that cannot
take effect are rejected before anything runs.
"""

from __future__ import annotations

import inspect as pyinspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import Benchmark, ConfigError
from .task_source import static_signature

# Parameter names that tasks use for the number of few-shot examples.
FEWSHOT_PARAMS = ("fewshot", "num_fewshot", "n_shots", "num_shots", "shots", "k_shot", "few_shot")
# Parameter names that tasks use for the model that grades (when they don't use model roles).
GRADER_PARAMS = ("scorer_model", "grader_model", "judge_model", "grader")
SANDBOX_PARAMS = ("sandbox", "sandbox_type")


@dataclass(frozen=True)
class TaskSignature:
    """What steerbench needs to know about a task function."""

    eval_name: str
    params: dict[str, Any]  # name -> default (pyinspect.Parameter.empty when required)
    accepts_any: bool  # has **kwargs
    fewshot_param: str | None
    grader_param: str | None
    sandbox_param: str | None

    def accepts(self, arg: str) -> bool:
        return self.accepts_any or arg in self.params


def _find_task_function(eval_name: str) -> Callable[..., Any] | None:
    from inspect_ai._eval.loader import load_file_tasks
    from inspect_ai._util.registry import registry_lookup

    if "@" in eval_name or eval_name.endswith(".py"):
        file_part, _, task_name = eval_name.partition("@")
        path = Path(file_part)
        if not path.is_file():
            return None
        load_file_tasks(path.absolute())
        if not task_name:
            return None
        return registry_lookup("task", task_name)
    return registry_lookup("task", eval_name)


def _imported_signature(eval_name: str) -> tuple[dict[str, Any], bool] | None:
    try:
        fn = _find_task_function(eval_name)
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
    found = (static.params, static.accepts_any) if static else _imported_signature(eval_name)
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


def fewshot_default(sig: TaskSignature) -> Any:
    if sig.fewshot_param is None:
        return None
    default = sig.params[sig.fewshot_param]
    return None if default is pyinspect.Parameter.empty else default
