"""The 12 shipped benchmarks end to end through the CLI, offline: dataset, real
inspect_evals task code, scorer, grader, sandbox, log, CSV.

One `steerbench run --all` of the shipped benchmarks.jsonl (graders as shipped:
`anthropic/claude-3-7-sonnet-20250219`) runs in a subprocess, since `datasets` and
inspect_evals read HF_HOME, the offline switches and INSPECT_EVALS_CACHE_DIR at import.
It runs against three simulated steered endpoints on 127.0.0.1 (one always right, one
always wrong, one right on every other sample), a local Anthropic Messages API server
for the grader, and a trap proxy that records any attempt to reach the network. Then
`steerbench aggregate`, and the exact scores are checked in their CSV columns.

The data is steerbench's synthetic offline fixture (steerbench.sim.offline_data); IFEval's
checker is the labelled stand-in in tests/stubs (the real one is not on PyPI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from tests.helpers import REPO, STUBS
from tests.offline_servers import MessagesAPIServer, TrapProxy

from steerbench.cli import main
from steerbench.sim.offline_data import identify, prepare_offline_cache, respond, samples_of
from steerbench.sim.simulator import SimulatedFleet, message_text

SHIPPED_BENCHMARKS = REPO / "benchmarks.jsonl"
GRADER = "claude-3-7-sonnet-20250219"  # as in the shipped benchmarks.jsonl

# One multiplier per kind of model.
WRONG, RIGHT, MIXED = -1.0, 0.0, 1.0
LABEL = {WRONG: "-1.0", RIGHT: "0.0", MIXED: "1.0"}


# ---------------------------------------------------------------- the simulated models


def right_on_every_other_sample(messages: list[dict[str, Any]]) -> bool:
    """The mixed model is right on the samples at even positions of their benchmark."""
    found = identify(messages)
    if found is None or found.sample is None:
        return True
    return [s.key for s in samples_of(found.benchmark)].index(found.sample.key) % 2 == 0


def steered_model(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    correct = {RIGHT: True, WRONG: False}.get(multiplier)
    return respond(messages, right_on_every_other_sample(messages) if correct is None else correct)


# ---------------------------------------------------------------- what each model must score


def mixed_fraction(benchmark: str, label: str | None = None) -> float:
    """Share of the benchmark's samples (of one XSTest label) the mixed model gets right."""
    positions = [i for i, s in enumerate(samples_of(benchmark)) if label is None or s.row["label"] == label]
    return sum(1 for i in positions if i % 2 == 0) / len(positions)


def ifeval_mixed_instruction_share() -> float:
    rows = [s.row for s in samples_of("ifeval")]
    followed = sum(len(r["instruction_id_list"]) for i, r in enumerate(rows) if i % 2 == 0)
    return followed / sum(len(r["instruction_id_list"]) for r in rows)


def expected_scores() -> dict[tuple[str, str], dict[str, tuple[float, float, float]]]:
    """(benchmark, subset) -> CSV column -> (score of the right, wrong, mixed model)."""

    def accuracy(bench: str) -> dict[str, tuple[float, float, float]]:
        return {"accuracy": (1.0, 0.0, mixed_fraction(bench))}

    prompts, instructions = mixed_fraction("ifeval"), ifeval_mixed_instruction_share()
    sycophancy = mixed_fraction("sycophancy")  # right = stands by its right first answer
    return {
        ("MMLU", ""): accuracy("mmlu_0_shot"),
        ("ARC_Easy", ""): accuracy("arc_easy"),
        ("ARC_Challenge", ""): accuracy("arc_challenge"),
        ("GPQA", ""): accuracy("gpqa_diamond"),
        ("CommonSenseQA", ""): accuracy("commonsense_qa"),
        ("TruthfulQA", ""): accuracy("truthfulqa"),
        ("GSM8K", ""): accuracy("gsm8k"),
        ("HumanEval", ""): accuracy("humaneval"),
        ("MBPP", ""): {**accuracy("mbpp"), "verify[pass_at_1]/accuracy": (1.0, 0.0, mixed_fraction("mbpp"))},
        ("IFEval", ""): {
            "prompt_strict_acc": (1.0, 0.0, prompts),
            "prompt_loose_acc": (1.0, 0.0, prompts),
            "inst_strict_acc": (1.0, 0.0, instructions),
            "inst_loose_acc": (1.0, 0.0, instructions),
            "final_acc": (1.0, 0.0, (2 * prompts + 2 * instructions) / 4),
        },
        # right = comply with safe prompts and refuse unsafe ones; refusal_rate is in percent
        ("XSTest", "safe"): {"refusal_rate": (0.0, 100.0, 100 * (1 - mixed_fraction("xstest", "safe")))},
        ("XSTest", "unsafe"): {"refusal_rate": (100.0, 0.0, 100 * mixed_fraction("xstest", "unsafe"))},
        ("Sycophancy", ""): {
            "inspect_evals/truthfulness": (1.0, 0.0, sycophancy),
            "inspect_evals/confidence": (1.0, 0.0, sycophancy),
            "inspect_evals/apologize_rate": (0.0, 1.0, 1 - sycophancy),
            "admits_mistake/mean": (0.0, 1.0, 1 - sycophancy),
            "mean": (1.0, 1.0, 1.0),  # original_answer: the first answer is always right
        },
    }


SAMPLES = {  # (benchmark, subset) -> n_samples (GPQA: 4 epochs, MBPP: 5 epochs)
    ("MMLU", ""): 4,
    ("ARC_Easy", ""): 4,
    ("ARC_Challenge", ""): 4,
    ("GPQA", ""): 16,
    ("CommonSenseQA", ""): 4,
    ("TruthfulQA", ""): 4,
    ("GSM8K", ""): 4,
    ("HumanEval", ""): 3,
    ("MBPP", ""): 15,
    ("IFEval", ""): 5,
    ("XSTest", "safe"): 3,
    ("XSTest", "unsafe"): 3,
    ("Sycophancy", ""): 4,
}


# ---------------------------------------------------------------- running the CLI offline


def offline_env(cache: dict[str, str], trap: TrapProxy, **extra: str) -> dict[str, str]:
    """The environment of a `steerbench` subprocess: synthetic caches, offline, every
    non-loopback request sent to the trap, no provider keys from the outside. (`run` and
    `prefetch` also get --synthetic-data: trust the synthetic GPQA CSV, no download retries.)"""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "INSPECT_", "OPENAI_", "ANTHROPIC_", "STEERBENCH_", "DOCKER_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(cache)
    env.update(trap.environment())
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(STUBS), str(REPO / "src"), str(REPO)]),
            "INSPECT_LOG_LEVEL": "warning",
        }
    )
    env.update(extra)
    return env


def steerbench(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steerbench.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def aggregate_csv(logs: Path, deployments: Path, benchmarks: Path, out: Path) -> pd.DataFrame:
    result = CliRunner().invoke(
        main,
        [
            "aggregate",
            "--log-root",
            str(logs),
            "--output",
            str(out),
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
        ],
    )
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, dtype={"multiplier": str, "subset": str}, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return prepare_offline_cache(tmp_path_factory.mktemp("offline") / "cache")


@dataclass
class StudyRun:
    proc: subprocess.CompletedProcess[str]
    seconds: float
    csv: pd.DataFrame
    logs: Path
    fleet: SimulatedFleet
    grader: MessagesAPIServer
    trap: TrapProxy

    def row(self, benchmark: str, subset: str, multiplier: float) -> pd.Series:
        rows = self.csv[
            (self.csv.benchmark == benchmark)
            & (self.csv.subset.fillna("") == subset)
            & (self.csv.multiplier == LABEL[multiplier])
        ]
        assert len(rows) == 1, (benchmark, subset, multiplier, rows)
        return rows.iloc[0]

    def bodies(self, multiplier: float) -> list[dict[str, Any]]:
        return self.fleet.by_multiplier(multiplier).stats.bodies


@pytest.fixture(scope="module")
def shipped_study(tmp_path_factory: pytest.TempPathFactory, offline_cache: dict[str, str]) -> StudyRun:
    """`steerbench run --all --sandbox local` of the shipped benchmarks.jsonl, then aggregate."""
    root = tmp_path_factory.mktemp("study")
    fleet = SimulatedFleet([WRONG, RIGHT, MIXED], steered_model, keep_bodies=True)
    with fleet, MessagesAPIServer() as grader, TrapProxy() as trap:
        deployments = root / "deployments.jsonl"
        fleet.write_deployments(deployments)
        env = offline_env(offline_cache, trap, ANTHROPIC_BASE_URL=grader.url, ANTHROPIC_API_KEY=grader.key)
        started = time.perf_counter()
        proc = steerbench(
            [
                "run",
                "--synthetic-data",
                "--all",
                "--deployments",
                str(deployments),
                "--benchmarks",
                str(SHIPPED_BENCHMARKS),
                "--log-root",
                str(root / "logs"),
                "--sandbox",
                "local",
                "--workers",
                "2",
            ],
            env,
            root,
        )
        seconds = time.perf_counter() - started
    csv = aggregate_csv(root / "logs", deployments, SHIPPED_BENCHMARKS, root / "aggregated.csv")
    return StudyRun(proc, seconds, csv, root / "logs", fleet, grader, trap)


# ---------------------------------------------------------------- the 12 benchmarks


def test_the_whole_grid_succeeds_offline(shipped_study: StudyRun) -> None:
    proc = shipped_study.proc
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "39 done, 0 failed" in proc.stdout  # 13 cells (XSTest has two subsets) x 3 multipliers
    assert set(shipped_study.csv.status) == {"success"}
    assert len(shipped_study.csv) == 39
    # nothing tried to leave the machine: no Hugging Face, GitHub, GPQA blob or NLTK punkt download
    assert shipped_study.trap.attempts == []
    # every request to a steered endpoint was one of the synthetic samples
    for multiplier in (WRONG, RIGHT, MIXED):
        assert all(identify(body["messages"]) is not None for body in shipped_study.bodies(multiplier))


@pytest.mark.parametrize("cell", list(SAMPLES), ids=lambda c: f"{c[0]}[{c[1]}]" if c[1] else c[0])
def test_right_wrong_and_mixed_answers_score_exactly(shipped_study: StudyRun, cell: tuple[str, str]) -> None:
    benchmark, subset = cell
    for column, (right, wrong, mixed) in expected_scores()[cell].items():
        for multiplier, expected in ((RIGHT, right), (WRONG, wrong), (MIXED, mixed)):
            row = shipped_study.row(benchmark, subset, multiplier)
            assert row[column] == pytest.approx(expected), (
                benchmark,
                subset,
                column,
                multiplier,
                row.dropna().to_dict(),
            )
    for multiplier in (WRONG, RIGHT, MIXED):
        row = shipped_study.row(benchmark, subset, multiplier)
        assert row["status"] == "success"
        assert row["n_samples"] == row["completed_samples"] == SAMPLES[cell]
        assert row["model"].startswith("openai-api/steer_m")


def test_mixed_model_is_really_mixed() -> None:
    """Each benchmark's mixed run has right and wrong answers, so a scorer that always
    passes or always fails cannot give the expected score."""
    for bench in (
        "mmlu_0_shot",
        "arc_easy",
        "arc_challenge",
        "gpqa_diamond",
        "commonsense_qa",
        "truthfulqa",
        "gsm8k",
        "humaneval",
        "mbpp",
        "ifeval",
        "sycophancy",
    ):
        assert 0 < mixed_fraction(bench) < 1, bench
    for label in ("safe", "unsafe"):
        assert 0 < mixed_fraction("xstest", label) < 1


# ---------------------------------------------------------------- graders


def test_shipped_anthropic_grader_grades_at_its_base_url(shipped_study: StudyRun) -> None:
    kinds = [kind for _, _, kind in shipped_study.grader.requests]
    assert {model for model, _, _ in shipped_study.grader.requests} == {GRADER}
    assert shipped_study.grader.rejected_keys == 0
    # XSTest: one grading per sample (6 prompts x 3 multipliers); Sycophancy: one
    # "did it admit a mistake" per sample (4 x 3), plus answer checks of the free-form ones
    assert kinds.count("xstest_grader") == 18
    assert kinds.count("sycophancy_admission_grader") == 12
    assert kinds.count("sycophancy_answer_grader") > 0
    assert set(kinds) == {"xstest_grader", "sycophancy_admission_grader", "sycophancy_answer_grader"}
    # the steered endpoints were asked the task prompts only, never to grade
    for multiplier in (WRONG, RIGHT, MIXED):
        assert {identify(b["messages"]).kind for b in shipped_study.bodies(multiplier)} == {"task"}


# ---------------------------------------------------------------- sandboxes and few-shot


def _headers(logs: Path, category: str, multiplier: float) -> list[Any]:
    from inspect_ai.log import list_eval_logs, read_eval_log

    infos = list_eval_logs(str(logs / category / f"multiplier_{LABEL[multiplier]}"))
    return [read_eval_log(info, header_only=True) for info in infos]


def test_code_runs_in_the_local_sandbox_only_when_asked(shipped_study: StudyRun) -> None:
    assert "WARNING: sandbox=local" in shipped_study.proc.stderr
    assert "model-written code" in shipped_study.proc.stderr
    headers = _headers(shipped_study.logs, "Code", RIGHT)
    assert sorted(h.eval.task for h in headers) == ["inspect_evals/humaneval", "inspect_evals/mbpp"]
    for header in headers:
        # HumanEval through its `sandbox` argument, MBPP (no such argument) through task_with
        assert header.eval.sandbox is not None and header.eval.sandbox.type == "local", header.eval.task


def _train_questions() -> list[str]:
    data = resources.files("steerbench.sim.offline_data").joinpath("data", "gsm8k.json").read_text()
    return [row["question"] for row in json.loads(data)["train"]]


def test_gsm8k_prompt_holds_exactly_the_configured_8_examples(shipped_study: StudyRun) -> None:
    from inspect_ai.log import read_eval_log

    questions = _train_questions()
    assert len(questions) > 10  # more than the task's default of 10, so 8 can only come from shots=8
    (header,) = _headers(shipped_study.logs, "Math", RIGHT)
    log = read_eval_log(header.location)
    assert log.eval.task_args["fewshot"] == 8
    for sample in log.samples:
        system = next(m for m in sample.messages if m.role == "system")
        assert sum(q in system.text for q in questions) == 8
    # and what the endpoint received: the same 8 examples in every GSM8K request
    gsm8k = [b for b in shipped_study.bodies(RIGHT) if identify(b["messages"]).benchmark == "gsm8k"]
    assert len(gsm8k) == 4
    for body in gsm8k:
        system = "\n".join(message_text(m) for m in body["messages"] if m["role"] == "system")
        assert sum(q in system for q in questions) == 8


# ---------------------------------------------------------------- failures that must show


@pytest.fixture(scope="module")
def failing_study(tmp_path_factory: pytest.TempPathFactory, offline_cache: dict[str, str]) -> dict[str, Any]:
    """Code benchmarks with the default docker sandbox and no Docker engine; XSTest with its
    dataset missing from the cache; Sycophancy graded by the steered model itself."""
    root = tmp_path_factory.mktemp("failing")
    cache_root = Path(offline_cache["HF_HOME"]).parent
    shutil.copytree(cache_root, root / "cache", ignore=shutil.ignore_patterns("*.lock"))
    shutil.rmtree(root / "cache" / "hf_home" / "datasets" / "walledai___xs_test")
    benchmarks = root / "benchmarks.jsonl"
    benchmarks.write_text(
        "".join(
            json.dumps(b) + "\n"
            for b in [
                {"name": "Sycophancy", "eval_name": "inspect_evals/sycophancy", "category": "Safety", "grader": "self"},
                {
                    "name": "XSTest",
                    "eval_name": "inspect_evals/xstest",
                    "category": "Safety",
                    "subsets": [{"subset": "safe"}],
                    "grader": "self",
                },
                {"name": "HumanEval", "eval_name": "inspect_evals/humaneval", "category": "Code"},
                {"name": "MBPP", "eval_name": "inspect_evals/mbpp", "category": "Code"},
            ]
        )
    )
    fleet = SimulatedFleet([RIGHT, WRONG], steered_model, keep_bodies=True)
    with fleet, TrapProxy() as trap:
        deployments = root / "deployments.jsonl"
        fleet.write_deployments(deployments)
        cache = {k: v.replace(str(cache_root), str(root / "cache")) for k, v in offline_cache.items()}
        # no Docker engine, whatever this machine has; no Anthropic key needed with grader "self"
        env = offline_env(cache, trap, DOCKER_HOST=f"unix://{root}/no-docker-here.sock")
        started = time.perf_counter()
        proc = steerbench(
            [
                "run",
                "--synthetic-data",
                "--all",
                "--deployments",
                str(deployments),
                "--benchmarks",
                str(benchmarks),
                "--log-root",
                str(root / "logs"),
                "--workers",
                "1",
            ],
            env,
            root,
        )
        seconds = time.perf_counter() - started
    csv = aggregate_csv(root / "logs", deployments, benchmarks, root / "aggregated.csv")
    status = CliRunner().invoke(
        main,
        [
            "status",
            "--log-root",
            str(root / "logs"),
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
        ],
    )
    return {"proc": proc, "seconds": seconds, "csv": csv, "fleet": fleet, "trap": trap, "status": status.output}


def _summary_line(stdout: str, label: str, multiplier: float) -> str:
    (line,) = [ln for ln in stdout.splitlines() if ln.split()[:2] == [label, LABEL[multiplier]]]
    return line


def test_no_docker_engine_fails_the_code_cells_visibly(failing_study: dict[str, Any]) -> None:
    proc, csv = failing_study["proc"], failing_study["csv"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for bench in ("HumanEval", "MBPP"):
        for multiplier in (RIGHT, WRONG):
            line = _summary_line(proc.stdout, bench, multiplier)
            assert " error " in line and "Docker" in line and "--sandbox local" in line, line
            (row,) = csv[(csv.benchmark == bench) & (csv.multiplier == LABEL[multiplier])].to_dict("records")
            assert row["status"] == "error"  # in the CSV: not a score of 0, not merely missing
            assert pd.isna(row["accuracy"])
    assert "HumanEval" in failing_study["status"] and "FAILED" in failing_study["status"]
    # no code benchmark prompt was ever sent
    for multiplier in (RIGHT, WRONG):
        benches = {
            identify(b["messages"]).benchmark for b in failing_study["fleet"].by_multiplier(multiplier).stats.bodies
        }
        assert benches == {"sycophancy"}


def test_a_dataset_missing_from_the_cache_fails_its_cell_at_once(failing_study: dict[str, Any]) -> None:
    proc, csv = failing_study["proc"], failing_study["csv"]
    for multiplier in (RIGHT, WRONG):
        line = _summary_line(proc.stdout, "XSTest[safe]", multiplier)
        assert " error " in line and "walledai/XSTest" in line, line
        (row,) = csv[(csv.benchmark == "XSTest") & (csv.multiplier == LABEL[multiplier])].to_dict("records")
        assert row["status"] == "error"
    assert failing_study["trap"].attempts == []
    assert failing_study["seconds"] < 120  # inspect_evals' download back-off alone would take minutes


def test_self_grading_goes_to_each_cells_own_endpoint(failing_study: dict[str, Any]) -> None:
    csv = failing_study["csv"]
    for multiplier, truthfulness in ((RIGHT, 1.0), (WRONG, 0.0)):
        (row,) = csv[(csv.benchmark == "Sycophancy") & (csv.multiplier == LABEL[multiplier])].to_dict("records")
        assert row["status"] == "success"
        assert row["inspect_evals/truthfulness"] == truthfulness
        kinds = [identify(b["messages"]).kind for b in failing_study["fleet"].by_multiplier(multiplier).stats.bodies]
        assert kinds.count("sycophancy_admission_grader") == 4  # its own 4 samples, graded by itself


# ---------------------------------------------------------------- IFEval's dependency


def test_run_says_how_to_install_ifevals_checker(
    tmp_path: Path, fleet: SimulatedFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != STUBS])
    monkeypatch.delitem(sys.modules, "instruction_following_eval", raising=False)
    assert importlib.util.find_spec("instruction_following_eval") is None
    deployments, benchmarks = tmp_path / "deployments.jsonl", tmp_path / "benchmarks.jsonl"
    fleet.write_deployments(deployments)
    benchmarks.write_text(SHIPPED_BENCHMARKS.read_text().splitlines()[1] + "\n")  # the IFEval line
    assert '"IFEval"' in benchmarks.read_text()
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--all",
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
            "--log-root",
            str(tmp_path / "logs"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "IFEval needs the Python module 'instruction_following_eval'" in result.output
    assert "not on PyPI" in result.output
    assert "pip install git+https://github.com/josejg/instruction_following_eval" in result.output
    assert sum(e.stats.completions for e in fleet.endpoints) == 0  # nothing was sent


# ---------------------------------------------------------------- steerbench prefetch


def _prefetch_lines(stdout: str) -> dict[str, str]:
    """label -> the rest of its report line."""
    lines = {}
    for line in stdout.splitlines():
        parts = line.split(None, 1)
        if line.startswith("  ") and len(parts) == 2:
            lines[parts[0]] = parts[1]
    return lines


ALL_LABELS = [
    "MMLU",
    "IFEval",
    "ARC_Easy",
    "ARC_Challenge",
    "GPQA",
    "HumanEval",
    "MBPP",
    "GSM8K",
    "CommonSenseQA",
    "TruthfulQA",
    "Sycophancy",
    "XSTest[safe]",
    "XSTest[unsafe]",
]


def test_prefetch_finds_every_shipped_benchmark_cached(tmp_path: Path, offline_cache: dict[str, str]) -> None:
    """Not offline: the check runs in a child process with the Hub switched off, and as
    everything is cached, nothing is downloaded."""
    with TrapProxy() as trap:
        env = offline_env(offline_cache, trap)
        for switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            env.pop(switch)
        proc = steerbench(["prefetch", "--synthetic-data", "--benchmarks", str(SHIPPED_BENCHMARKS)], env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = _prefetch_lines(proc.stdout)
    assert sorted(lines) == sorted(ALL_LABELS)
    assert all(rest.startswith("cached ") for rest in lines.values()), lines
    assert "13 cached, 0 downloaded, 0 failed" in proc.stdout
    assert trap.attempts == []


def test_prefetch_offline_names_what_is_missing_without_waiting(tmp_path: Path, offline_cache: dict[str, str]) -> None:
    cache_root = Path(offline_cache["HF_HOME"]).parent
    shutil.copytree(cache_root, tmp_path / "cache", ignore=shutil.ignore_patterns("*.lock"))
    shutil.rmtree(tmp_path / "cache" / "hf_home" / "datasets" / "walledai___xs_test")  # a Hugging Face dataset
    (tmp_path / "cache" / "inspect_evals_cache" / "gpqa" / "gpqa_diamond.csv").unlink()  # a plain file
    cache = {k: v.replace(str(cache_root), str(tmp_path / "cache")) for k, v in offline_cache.items()}
    with TrapProxy() as trap:
        started = time.perf_counter()
        proc = steerbench(
            ["prefetch", "--synthetic-data", "--benchmarks", str(SHIPPED_BENCHMARKS)],
            offline_env(cache, trap),
            tmp_path,
            timeout=180,
        )
        seconds = time.perf_counter() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    lines = _prefetch_lines(proc.stdout)
    for label in ("XSTest[safe]", "XSTest[unsafe]"):
        assert lines[label].startswith("failed ") and "walledai/XSTest" in lines[label], lines[label]
    assert lines["GPQA"].startswith("failed ") and "not in the local cache" in lines["GPQA"], lines["GPQA"]
    assert all(
        lines[label].startswith("cached ")
        for label in ALL_LABELS
        if label not in ("XSTest[safe]", "XSTest[unsafe]", "GPQA")
    )
    assert "10 cached, 0 downloaded, 3 failed" in proc.stdout
    assert trap.attempts == []  # offline means offline: not even a try
    assert seconds < 90  # with inspect_evals' back-off, a missing dataset takes minutes


TOY_TASK = '''
import os
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import json_dataset
from inspect_ai.util import download


@task
def remote_toy():
    """A task whose dataset is a file downloaded (and checksummed) when the task is created."""
    path = download(os.environ["TOY_URL"], os.environ["TOY_SHA256"], Path(os.environ["TOY_CACHE"]) / "toy.jsonl")
    return Task(dataset=json_dataset(str(path)))
'''


def test_prefetch_downloads_what_is_missing_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online: a task whose file is not cached is downloaded (here from 127.0.0.1), checked
    offline again, and found cached by the next prefetch."""
    import hashlib

    served = tmp_path / "served"
    served.mkdir()
    data = b'{"input": "What is 2 + 2?", "target": "4"}\n'
    (served / "toy.jsonl").write_bytes(data)
    (tmp_path / "toy_task.py").write_text(TOY_TASK)
    (tmp_path / "benchmarks.jsonl").write_text(
        json.dumps({"name": "Toy", "eval_name": f"{tmp_path / 'toy_task.py'}@remote_toy", "category": "Other"}) + "\n"
    )

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TOY_URL", f"http://127.0.0.1:{server.server_address[1]}/toy.jsonl")
        monkeypatch.setenv("TOY_SHA256", hashlib.sha256(data).hexdigest())
        monkeypatch.setenv("TOY_CACHE", str(tmp_path / "toy_cache"))
        first = CliRunner().invoke(main, ["prefetch", "--benchmarks", str(tmp_path / "benchmarks.jsonl")])
        assert first.exit_code == 0, first.output
        assert _prefetch_lines(first.output)["Toy"].startswith("downloaded "), first.output
        assert (tmp_path / "toy_cache" / "toy.jsonl").read_bytes() == data
        again = CliRunner().invoke(main, ["prefetch", "--benchmarks", str(tmp_path / "benchmarks.jsonl")])
        assert again.exit_code == 0, again.output
        assert _prefetch_lines(again.output)["Toy"].startswith("cached "), again.output
    finally:
        server.shutdown()
        server.server_close()
