"""What issue 5 changed, checked for behaviour (speed itself is measured by bench/, not here):
task signatures read from source agree with Inspect's; a dry run imports no Inspect yet
still rejects bad benchmarks; the simulator's concurrency cap; forked workers (one per
multiplier by default) keep every endpoint at or under --max-connections."""

from __future__ import annotations

import ast
import inspect as pyinspect
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import TASKS_FILE, expected_accuracy, toy_benchmarks, toy_responder, write_jsonl

from steerbench.simulator import SimulatedEndpoint, SimulatedFleet
from steerbench.task_source import NON_LITERAL, static_signature
from steerbench.tasks import _imported_signature

STUDY_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks.jsonl"


def _study_eval_names() -> list[str]:
    return [json.loads(line)["eval_name"] for line in STUDY_BENCHMARKS.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("eval_name", _study_eval_names() + [f"{TASKS_FILE}@arithmetic", f"{TASKS_FILE}@capitals"])
def test_signature_from_source_matches_the_imported_task(eval_name: str) -> None:
    static = static_signature(eval_name)
    imported = _imported_signature(eval_name)
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


def _dry_run(tmp_path: Path, benchmarks: list[dict]) -> subprocess.CompletedProcess[str]:
    """`steerbench run --dry-run` in a fresh interpreter, reporting whether Inspect got imported."""
    deployments = write_jsonl(tmp_path / "deployments.jsonl",
                              [{"multiplier": 0, "url": "http://127.0.0.1:9/v1/", "key": "not-used-here"}])
    bench_file = write_jsonl(tmp_path / "benchmarks.jsonl", benchmarks)
    code = (
        "import sys\nfrom steerbench.cli import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    print('inspect_ai imported:', 'inspect_ai' in sys.modules)\n    raise\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "run", "--all", "--dry-run", "--deployments", str(deployments),
         "--benchmarks", str(bench_file)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )


def test_dry_run_of_the_study_imports_no_inspect(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in STUDY_BENCHMARKS.read_text().splitlines() if line.strip()]
    result = _dry_run(tmp_path, rows)
    assert result.returncode == 0, result.stderr
    assert "inspect_ai imported: False" in result.stdout
    assert "GSM8K" in result.stdout and "{\"fewshot\": 8}" in result.stdout


@pytest.mark.parametrize(
    "row, message",
    [
        ({"name": "X", "eval_name": "inspect_evals/no_such_task", "category": "C"}, "unknown Inspect task"),
        ({"name": "X", "eval_name": "inspect_evals/gsm8k", "category": "C", "task_args": {"nope": 1}},
         "has no argument 'nope'"),
        ({"name": "X", "eval_name": "inspect_evals/arc_easy", "category": "C", "shots": 5}, "cannot take effect"),
        ({"name": "X", "eval_name": f"{TASKS_FILE}@arithmetic", "category": "C", "task_args": {"offset": 1, "zz": 2}},
         "has no argument 'zz'"),
    ],
)
def test_dry_run_still_rejects_bad_benchmarks(tmp_path: Path, row: dict, message: str) -> None:
    result = _dry_run(tmp_path, [row])
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "benchmarks.jsonl, line 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulator_serves_at_most_max_concurrency_requests_at_once() -> None:
    lock, serving, peak = threading.Lock(), [0], [0]

    def slow_responder(multiplier: float, messages: list, body: dict) -> str:
        with lock:
            serving[0] += 1
            peak[0] = max(peak[0], serving[0])
        time.sleep(0.05)
        with lock:
            serving[0] -= 1
        return "ok"

    endpoint = SimulatedEndpoint(0.0, slow_responder, max_concurrency=3).start()
    try:
        def ask(_: int) -> int:
            body = {"model": endpoint.model, "messages": [{"role": "user", "content": "hi"}]}
            return httpx.post(endpoint.url + "chat/completions", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {endpoint.key}"}).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            codes = list(pool.map(ask, range(24)))
    finally:
        endpoint.stop()
    assert codes == [200] * 24
    assert peak[0] == 3  # the cap held, and was reached
    assert endpoint.stats.peak_in_flight > 3  # the rest arrived and waited their turn


def test_forked_workers_one_per_multiplier_respect_max_connections(tmp_path: Path) -> None:
    """`steerbench run` as its own process (no other thread: its workers are forked), default
    workers (one per multiplier, here 5 for 2 cores), 2 connections per endpoint."""
    with SimulatedFleet([-1.0, -0.5, 0.0, 0.5, 1.0], toy_responder, latency=0.05) as fleet:
        deployments = tmp_path / "deployments.jsonl"
        fleet.write_deployments(deployments)
        benchmarks = toy_benchmarks(tmp_path / "benchmarks.jsonl")
        logs = tmp_path / "logs"
        result = subprocess.run(
            [sys.executable, "-m", "steerbench.cli", "run", "--all", "--deployments", str(deployments),
             "--benchmarks", str(benchmarks), "--log-root", str(logs), "--max-connections", "2"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "10 done, 0 failed" in result.stdout
        for endpoint in fleet.endpoints:
            assert endpoint.stats.completions == 8, endpoint.multiplier
            assert 1 <= endpoint.stats.peak_in_flight <= 2, endpoint.multiplier
    from steerbench.aggregate import aggregate

    rows = aggregate(str(logs)).rows
    assert len(rows) == 10
    for row in rows:
        assert row["accuracy"] == pytest.approx(expected_accuracy(float(row["multiplier"])))


def test_default_workers_is_one_per_multiplier() -> None:
    from steerbench.workers import MAX_DEFAULT_WORKERS, default_workers

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


def test_header_reader_gives_inspects_header_and_reports_damage(study: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner
    from inspect_ai.log import list_eval_logs, read_eval_log

    from steerbench.cli import main
    from steerbench.log_headers import read_log_headers

    result = CliRunner().invoke(main, ["run", "--deployments", str(study["deployments"]), "--benchmarks",
                                       str(study["benchmarks"]), "--log-root", str(study["logs"]), "--workers", "1",
                                       "--benchmark", "Arithmetic", "--multiplier", "0.5"])
    assert result.exit_code == 0, result.output
    (location,) = [info.name for info in list_eval_logs(str(study["logs"]), recursive=True)]
    damaged = tmp_path / "damaged.eval"
    damaged.write_bytes(Path(location.removeprefix("file://")).read_bytes()[:-100])
    fast, broken = read_log_headers([location, str(damaged)])
    slow = read_eval_log(location, header_only=True)
    assert fast.model_dump(exclude={"reductions"}) == slow.model_dump(exclude={"reductions"})
    assert fast.results.scores[0].metrics["accuracy"].value == pytest.approx(expected_accuracy(0.5))
    assert isinstance(broken, Exception)
