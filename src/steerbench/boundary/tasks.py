"""Inspect's task loader: load a task spec, look a task function up, create a task as inside an eval."""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any, cast
from collections.abc import Callable


def load_task_spec(eval_name: str, task_args: dict[str, Any]) -> list[Any]:
    """The task(s) `eval_name` names, created with `task_args` (creating one loads its dataset)."""
    from inspect_ai._eval.loader import load_task_spec as inspect_load_task_spec

    return inspect_load_task_spec(eval_name, dict(task_args))


def find_task_function(eval_name: str) -> Callable[..., Any] | None:
    """The function behind `pkg/task` or `file.py@task`, without calling it (None if unknown)."""
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
        return cast("Callable[..., Any] | None", registry_lookup("task", task_name))
    return cast("Callable[..., Any] | None", registry_lookup("task", eval_name))


def as_active_model(model: Any, create: Callable[[], Any]) -> Any:
    """`create()` run with `model` as Inspect's active model, as inside an eval of it: a task
    that asks for "the evaluated model" while it is created gets this one. The active model
    does not outlive the call."""
    from inspect_ai.model import GenerateConfig
    from inspect_ai.model._model import init_active_model

    def run() -> Any:
        init_active_model(model, GenerateConfig())
        return create()

    return contextvars.copy_context().run(run)
