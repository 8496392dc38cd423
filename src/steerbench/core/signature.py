"""What steerbench needs to know about a task function: its parameters, and which set shots, grader and sandbox."""

from __future__ import annotations

import inspect as pyinspect
from dataclasses import dataclass
from typing import Any


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


def fewshot_default(sig: TaskSignature) -> Any:
    if sig.fewshot_param is None:
        return None
    default = sig.params[sig.fewshot_param]
    return None if default is pyinspect.Parameter.empty else default
