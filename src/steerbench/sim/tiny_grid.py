"""A small Inspect task for real servers of the tiny model (vllm lane, bench/): greedy, scored by `includes`."""

from __future__ import annotations

import json
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate

WORDS = ["red", "blue", "fox", "dog", "plus", "two", "four", "Mars"]


@task
def tiny_grid(samples: int = 40) -> Task:
    return Task(
        dataset=[
            Sample(input=f"Say a word like {WORDS[i % 8]} number {i}.", target=WORDS[i % 8], id=i)
            for i in range(samples)
        ],
        solver=generate(),
        scorer=includes(),
    )


def write_benchmarks(path: Path, samples: int) -> Path:
    """A benchmarks.jsonl with this one task."""
    line = {
        "name": "TinyGrid",
        "eval_name": f"{Path(__file__).resolve()}@tiny_grid",
        "category": "capability",
        "shots": 0,
        "task_args": {"samples": samples},
    }
    path.write_text(json.dumps(line) + "\n")
    return path
