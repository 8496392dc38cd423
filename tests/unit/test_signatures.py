"""Task signatures read from source agree with Inspect's (steerbench.tasks), and the default worker count."""

from __future__ import annotations

import ast
import inspect as pyinspect
import json
import os
from pathlib import Path

import pytest

from steerbench.tasks.resolve import imported_signature
from steerbench.tasks.source import NON_LITERAL, static_signature
from tests.helpers import REPO, TASKS_FILE

STUDY_BENCHMARKS = REPO / "benchmarks.jsonl"


def _study_eval_names() -> list[str]:
    return [json.loads(line)["eval_name"] for line in STUDY_BENCHMARKS.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("eval_name", _study_eval_names() + [f"{TASKS_FILE}@arithmetic", f"{TASKS_FILE}@capitals"])
def test_signature_from_source_matches_the_imported_task(eval_name: str) -> None:
    static = static_signature(eval_name)
    imported = imported_signature(eval_name)
    assert static is not None and imported is not None
    params, accepts_any = imported
    assert list(static.params) == list(params)
    assert static.accepts_any == accepts_any
    for name, default in params.items():
        if static.params[name] is not NON_LITERAL:
            assert static.params[name] == default or static.params[name] is default, name


def test_unknown_or_uncertain_tasks_are_left_to_the_import_path(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed.py"
    renamed.write_text("from inspect_ai import task\n\n@task(name='other')\ndef renamed(x: int = 1):\n    pass\n")
    plain = tmp_path / "plain.py"
    plain.write_text("def helper(x=1):\n    pass\n")
    assert static_signature("inspect_evals/no_such_task") is None
    assert static_signature("no_such_package/gsm8k") is None
    assert static_signature(f"{renamed}@renamed") is None  # registered under another name
    assert static_signature(f"{plain}@helper") is None  # not a task
    assert static_signature(f"{tmp_path}/missing.py@x") is None


def test_default_workers_is_one_per_multiplier() -> None:
    from steerbench.execution.workers import MAX_DEFAULT_WORKERS, default_workers

    assert default_workers(7, forking=True) == 7
    assert default_workers(1, forking=True) == 1
    assert default_workers(1000, forking=True) == MAX_DEFAULT_WORKERS
    # spawned workers cost seconds each: one per core, as before
    assert default_workers(7, forking=False) == min(7, os.cpu_count() or 1)


def test_source_reading_never_imports(tmp_path: Path) -> None:
    """The static reader parses; a task file with import-time side effects is not run."""
    marker = tmp_path / "ran"
    task_file = tmp_path / "side_effect.py"
    task_file.write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom inspect_ai import task\n\n"
        "@task\ndef t(fewshot: int = 3, *, name: str = 'x', **kwargs):\n    pass\n"
    )
    sig = static_signature(f"{task_file}@t")
    assert sig is not None and sig.accepts_any
    assert sig.params == {"fewshot": 3, "name": "x"}
    assert not marker.exists()
    ast.parse(task_file.read_text())  # (the file is valid Python)
    assert pyinspect.Parameter.empty not in sig.params.values()
