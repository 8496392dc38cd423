"""The synthetic rows shipped with steerbench, and where each one has to go.

Everything under ``data/`` was made up for steerbench's tests and demo; none of it is
taken from the real benchmarks. Keys starting with ``_`` (``_about``, ``_responses``)
are notes for people and for the responder and are never written into a dataset.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

DATA_PACKAGE = "steerbench.sim.offline_data"
DATA_DIR = "data"


@dataclass(frozen=True)
class HFDatasetSpec:
    """One Hugging Face dataset configuration an inspect_evals task loads."""

    repo: str  # path passed to datasets.load_dataset
    config_name: str | None  # `name=` passed by the task (None: the default config)
    data_dir: str | None  # `data_dir=` passed by the task
    data_file: str  # file under data/ holding {split: [rows]}
    revision_source: tuple[str, str]  # (inspect_evals module file, constant) holding the pinned revision
    fallback_revision: str  # used when the inspect_evals source cannot be read


HF_DATASETS: tuple[HFDatasetSpec, ...] = (
    HFDatasetSpec(
        "cais/mmlu",
        "all",
        None,
        "mmlu.json",
        ("mmlu/mmlu.py", "MMLU_REVISION"),
        "c30699e8356da336a370243923dbaf21066bb9fe",
    ),
    HFDatasetSpec(
        "allenai/ai2_arc",
        "ARC-Easy",
        None,
        "arc_easy.json",
        ("arc/arc.py", "ARC_DATASET_REVISION"),
        "210d026faf9955653af8916fad021475a3f00453",
    ),
    HFDatasetSpec(
        "allenai/ai2_arc",
        "ARC-Challenge",
        None,
        "arc_challenge.json",
        ("arc/arc.py", "ARC_DATASET_REVISION"),
        "210d026faf9955653af8916fad021475a3f00453",
    ),
    HFDatasetSpec(
        "tau/commonsense_qa",
        None,
        None,
        "commonsense_qa.json",
        ("commonsense_qa/commonsense_qa.py", "COMMONSENSE_QA_DATASET_REVISION"),
        "94630fe30dad47192a8546eb75f094926d47e155",
    ),
    HFDatasetSpec(
        "openai/gsm8k",
        None,
        "main",
        "gsm8k.json",
        ("gsm8k/gsm8k.py", "GSM8K_DATASET_REVISION"),
        "cc7b047b6e5bb11b4f1af84efc572db110a51b3c",
    ),
    HFDatasetSpec(
        "openai/openai_humaneval",
        None,
        None,
        "humaneval.json",
        ("humaneval/humaneval.py", "HUMANEVAL_DATASET_REVISION"),
        "7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544",
    ),
    HFDatasetSpec(
        "google-research-datasets/mbpp",
        "full",
        None,
        "mbpp_full.json",
        ("mbpp/mbpp.py", "MBPP_DATASET_REVISION"),
        "4bb6404fdc6cacfda99d4ac4205087b89d32030c",
    ),
    HFDatasetSpec(
        "google-research-datasets/mbpp",
        "sanitized",
        None,
        "mbpp_sanitized.json",
        ("mbpp/mbpp.py", "MBPP_DATASET_REVISION"),
        "4bb6404fdc6cacfda99d4ac4205087b89d32030c",
    ),
    HFDatasetSpec(
        "google/IFEval",
        None,
        None,
        "ifeval.json",
        ("ifeval/ifeval.py", "IFEVAL_DATASET_REVISION"),
        "966cd89545d6b6acfd7638bc708b98261ca58e84",
    ),
    HFDatasetSpec(
        "truthfulqa/truthful_qa",
        "multiple_choice",
        None,
        "truthfulqa.json",
        ("truthfulqa/truthfulqa.py", "TRUTHFULQA_DATASET_REVISION"),
        "741b8276f2d1982aa3d5b832d3ee81ed3b896490",
    ),
    HFDatasetSpec(
        "walledai/XSTest",
        None,
        None,
        "xstest.json",
        ("xstest/xstest.py", "XSTEST_DATASET_REVISION"),
        "f1d713187c61b6ae64e602d74f0b3d812cc2e8e8",
    ),
)

GPQA_FILE = "gpqa_diamond.json"
SYCOPHANCY_FILE = "sycophancy_are_you_sure.jsonl"

# IFEval's kwargs column is a list of structs with one shared set of fields; rows
# leave out the ones they do not use and get None there.
IFEVAL_KWARG_FIELDS = (
    "num_words",
    "relation",
    "end_phrase",
    "keywords",
    "forbidden_words",
    "num_bullets",
    "postscript_marker",
)


def data_bytes(name: str) -> bytes:
    return resources.files(DATA_PACKAGE).joinpath(DATA_DIR, name).read_bytes()


def data_file_names() -> list[str]:
    folder = resources.files(DATA_PACKAGE).joinpath(DATA_DIR)
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".json", ".jsonl")))


def load_json(name: str) -> dict[str, Any]:
    return _load_json(name, _rows_wanted)


def load_jsonl(name: str) -> tuple[dict[str, Any], ...]:
    return _load_jsonl(name, _rows_wanted)


@cache
def _load_json(name: str, rows: int) -> dict[str, Any]:
    doc = json.loads(data_bytes(name).decode("utf-8"))
    for split, rows_of_split in list(doc.items()):
        if rows and (name, split) in _VARIANTS:
            doc[split] = _extended(name, split, rows_of_split, rows)
    return doc


@cache
def _load_jsonl(name: str, rows: int) -> tuple[dict[str, Any], ...]:
    lines = data_bytes(name).decode("utf-8").splitlines()
    found = [json.loads(line) for line in lines if line.strip()]
    return tuple(_extended(name, "", found, rows) if rows and (name, "") in _VARIANTS else found)


def sycophancy_bytes() -> bytes:
    """The Sycophancy JSONL as the task downloads it (with the variants, when there are any)."""
    if not _rows_wanted:
        return data_bytes(SYCOPHANCY_FILE)
    return "".join(json.dumps(row) + "\n" for row in load_jsonl(SYCOPHANCY_FILE)).encode("utf-8")


# ---------------------------------------------------------------- more rows, for the demo
#
# The shipped rows are few (3-8 a dataset), enough for the tests. The demo needs more samples
# per benchmark for its paired statistics, so `more_rows(n)` gives every benchmark n test rows
# (XSTest: n safe and n unsafe prompts; never fewer than shipped): the shipped rows, then copies whose
# question (or prompt) ends in " (synthetic variant k)", k = 1, 2, ..., with a new id. A copy
# has the shipped row's answer, so the responder and the scorers treat it as its original.

_rows_wanted = 0  # 0: the shipped rows only


def _suffix(k: int) -> str:
    return f" (synthetic variant {k})"


def _question(field: str, id_field: str | None = None, id_of: Any = None) -> Any:
    def variant(row: dict[str, Any], k: int) -> dict[str, Any]:
        copy = {**row, field: row[field] + _suffix(k)}
        if id_field:
            copy[id_field] = id_of(row[id_field], k) if id_of else f"{row[id_field]}-v{k}"
        return copy

    return variant


def _humaneval(row: dict[str, Any], k: int) -> dict[str, Any]:
    # a comment inside the function keeps prompt + canonical_solution valid code
    return {**row, "task_id": f"{row['task_id']}-v{k}", "prompt": row["prompt"] + f"    #{_suffix(k)}\n"}


def _sycophancy(row: dict[str, Any], k: int) -> dict[str, Any]:
    question = row["base"]["question"]
    prompt = [
        {**turn, "content": turn["content"].replace(question, question + _suffix(k), 1)} for turn in row["prompt"]
    ]
    return {**row, "prompt": prompt, "base": {**row["base"], "question": question + _suffix(k)}}


# (file, split) -> how a variant is made, and what its rows are counted by (XSTest: by label)
_VARIANTS: dict[tuple[str, str], tuple[Any, str | None]] = {
    ("mmlu.json", "test"): (_question("question"), None),
    ("arc_easy.json", "test"): (_question("question", "id"), None),
    ("arc_challenge.json", "test"): (_question("question", "id"), None),
    ("commonsense_qa.json", "validation"): (_question("question", "id"), None),
    (GPQA_FILE, "rows"): (_question("Question", "Record ID"), None),
    ("gsm8k.json", "test"): (_question("question"), None),
    ("humaneval.json", "test"): (_humaneval, None),
    ("mbpp_sanitized.json", "test"): (_question("prompt", "task_id", lambda i, k: int(i) + 1000 * k), None),
    ("ifeval.json", "train"): (_question("prompt", "key", lambda i, k: int(i) + 100000 * k), None),
    ("truthfulqa.json", "validation"): (_question("question"), None),
    ("xstest.json", "test"): (_question("prompt"), "label"),
    (SYCOPHANCY_FILE, ""): (_sycophancy, None),
}


def _extended(name: str, split: str, rows: list[dict[str, Any]], wanted: int) -> list[dict[str, Any]]:
    variant, group = _VARIANTS[(name, split)]
    counts: dict[Any, int] = {}
    for row in rows:
        counts[row.get(group) if group else None] = counts.get(row.get(group) if group else None, 0) + 1
    copies = max(1, -(-wanted // min(counts.values()))) if rows else 1  # ceil
    kept: dict[Any, int] = {}
    out = []
    for row in list(rows) + [variant(row, k) for k in range(1, copies) for row in rows]:
        key = row.get(group) if group else None
        if kept.get(key, 0) < max(wanted, counts[key]):  # exactly `wanted` (or the shipped rows, if more)
            kept[key] = kept.get(key, 0) + 1
            out.append(row)
    return out


def rows_wanted() -> int:
    return _rows_wanted


@contextlib.contextmanager
def more_rows(rows: int) -> Iterator[None]:
    """Inside this block every benchmark has at least `rows` test rows (see above)."""
    global _rows_wanted
    before, _rows_wanted = _rows_wanted, rows
    try:
        yield
    finally:
        _rows_wanted = before


def splits_of(spec: HFDatasetSpec) -> dict[str, list[dict[str, Any]]]:
    """{split: rows} for one HF dataset, with the `_` note keys stripped."""
    doc = load_json(spec.data_file)
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, rows in doc.items():
        if split.startswith("_"):
            continue
        clean = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
        if spec.repo == "google/IFEval":
            for row in clean:
                row["kwargs"] = [{field: kw.get(field) for field in IFEVAL_KWARG_FIELDS} for kw in row["kwargs"]]
        splits[split] = clean
    return splits


def gpqa_csv_bytes() -> bytes:
    """The synthetic GPQA Diamond CSV, byte for byte (its SHA-256 is what the patch trusts)."""
    doc = load_json(GPQA_FILE)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=doc["columns"], dialect="unix")
    writer.writeheader()
    for row in doc["rows"]:
        writer.writerow(row)
    return out.getvalue().encode("utf-8")
