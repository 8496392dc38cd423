"""The synthetic rows shipped with steerbench, and where each one has to go.

Everything under ``data/`` was made up for steerbench's tests and demo; none of it is
taken from the real benchmarks. Keys starting with ``_`` (``_about``, ``_responses``)
are notes for people and for the responder and are never written into a dataset.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import lru_cache
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
    HFDatasetSpec("cais/mmlu", "all", None, "mmlu.json",
                  ("mmlu/mmlu.py", "MMLU_REVISION"), "c30699e8356da336a370243923dbaf21066bb9fe"),
    HFDatasetSpec("allenai/ai2_arc", "ARC-Easy", None, "arc_easy.json",
                  ("arc/arc.py", "ARC_DATASET_REVISION"), "210d026faf9955653af8916fad021475a3f00453"),
    HFDatasetSpec("allenai/ai2_arc", "ARC-Challenge", None, "arc_challenge.json",
                  ("arc/arc.py", "ARC_DATASET_REVISION"), "210d026faf9955653af8916fad021475a3f00453"),
    HFDatasetSpec("tau/commonsense_qa", None, None, "commonsense_qa.json",
                  ("commonsense_qa/commonsense_qa.py", "COMMONSENSE_QA_DATASET_REVISION"),
                  "94630fe30dad47192a8546eb75f094926d47e155"),
    HFDatasetSpec("openai/gsm8k", None, "main", "gsm8k.json",
                  ("gsm8k/gsm8k.py", "GSM8K_DATASET_REVISION"), "cc7b047b6e5bb11b4f1af84efc572db110a51b3c"),
    HFDatasetSpec("openai/openai_humaneval", None, None, "humaneval.json",
                  ("humaneval/humaneval.py", "HUMANEVAL_DATASET_REVISION"),
                  "7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544"),
    HFDatasetSpec("google-research-datasets/mbpp", "full", None, "mbpp_full.json",
                  ("mbpp/mbpp.py", "MBPP_DATASET_REVISION"), "4bb6404fdc6cacfda99d4ac4205087b89d32030c"),
    HFDatasetSpec("google-research-datasets/mbpp", "sanitized", None, "mbpp_sanitized.json",
                  ("mbpp/mbpp.py", "MBPP_DATASET_REVISION"), "4bb6404fdc6cacfda99d4ac4205087b89d32030c"),
    HFDatasetSpec("google/IFEval", None, None, "ifeval.json",
                  ("ifeval/ifeval.py", "IFEVAL_DATASET_REVISION"), "966cd89545d6b6acfd7638bc708b98261ca58e84"),
    HFDatasetSpec("truthfulqa/truthful_qa", "multiple_choice", None, "truthfulqa.json",
                  ("truthfulqa/truthfulqa.py", "TRUTHFULQA_DATASET_REVISION"),
                  "741b8276f2d1982aa3d5b832d3ee81ed3b896490"),
    HFDatasetSpec("walledai/XSTest", None, None, "xstest.json",
                  ("xstest/xstest.py", "XSTEST_DATASET_REVISION"), "f1d713187c61b6ae64e602d74f0b3d812cc2e8e8"),
)

GPQA_FILE = "gpqa_diamond.json"
SYCOPHANCY_FILE = "sycophancy_are_you_sure.jsonl"

# IFEval's kwargs column is a list of structs with one shared set of fields; rows
# leave out the ones they do not use and get None there.
IFEVAL_KWARG_FIELDS = (
    "num_words", "relation", "end_phrase", "keywords", "forbidden_words",
    "num_bullets", "postscript_marker",
)


def data_bytes(name: str) -> bytes:
    return resources.files(DATA_PACKAGE).joinpath(DATA_DIR, name).read_bytes()


def data_file_names() -> list[str]:
    folder = resources.files(DATA_PACKAGE).joinpath(DATA_DIR)
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".json", ".jsonl")))


@lru_cache(maxsize=None)
def load_json(name: str) -> dict[str, Any]:
    return json.loads(data_bytes(name).decode("utf-8"))


@lru_cache(maxsize=None)
def load_jsonl(name: str) -> tuple[dict[str, Any], ...]:
    lines = data_bytes(name).decode("utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


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
                row["kwargs"] = [
                    {field: kw.get(field) for field in IFEVAL_KWARG_FIELDS} for kw in row["kwargs"]
                ]
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
