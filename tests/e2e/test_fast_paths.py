"""What issue 5 changed, checked for behaviour (speed itself is measured by bench/, not here):
task signatures read from source agree with Inspect's; a dry run imports no Inspect yet
still rejects bad benchmarks; the simulator's concurrency cap; forked workers (one per
multiplier by default) keep every endpoint at or under --max-connections."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tests.helpers import REPO, TASKS_FILE, expected_accuracy, toy_benchmarks, toy_responder, write_jsonl

from steerbench.sim.simulator import SimulatedEndpoint, SimulatedFleet

STUDY_BENCHMARKS = REPO / "benchmarks.jsonl"


def _dry_run(tmp_path: Path, benchmarks: list[dict]) -> subprocess.CompletedProcess[str]:
    """`steerbench run --dry-run` in a fresh interpreter, reporting whether Inspect got imported."""
    deployments = write_jsonl(
        tmp_path / "deployments.jsonl", [{"multiplier": 0, "url": "http://127.0.0.1:9/v1/", "key": "not-used-here"}]
    )
    bench_file = write_jsonl(tmp_path / "benchmarks.jsonl", benchmarks)
    code = (
        "import sys\nfrom steerbench.cli import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    print('inspect_ai imported:', 'inspect_ai' in sys.modules)\n    raise\n"
    )
    return subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "run",
            "--all",
            "--dry-run",
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(bench_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_dry_run_of_the_study_imports_no_inspect(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in STUDY_BENCHMARKS.read_text().splitlines() if line.strip()]
    result = _dry_run(tmp_path, rows)
    assert result.returncode == 0, result.stderr
    assert "inspect_ai imported: False" in result.stdout
    assert "GSM8K" in result.stdout and '{"fewshot": 8}' in result.stdout


@pytest.mark.parametrize(
    "row, message",
    [
        ({"name": "X", "eval_name": "inspect_evals/no_such_task", "category": "C"}, "unknown Inspect task"),
        (
            {"name": "X", "eval_name": "inspect_evals/gsm8k", "category": "C", "task_args": {"nope": 1}},
            "has no argument 'nope'",
        ),
        ({"name": "X", "eval_name": "inspect_evals/arc_easy", "category": "C", "shots": 5}, "cannot take effect"),
        (
            {
                "name": "X",
                "eval_name": f"{TASKS_FILE}@arithmetic",
                "category": "C",
                "task_args": {"offset": 1, "zz": 2},
            },
            "has no argument 'zz'",
        ),
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
            return httpx.post(
                endpoint.url + "chat/completions",
                json=body,
                timeout=30,
                headers={"Authorization": f"Bearer {endpoint.key}"},
            ).status_code

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
            [
                sys.executable,
                "-m",
                "steerbench.cli",
                "run",
                "--all",
                "--deployments",
                str(deployments),
                "--benchmarks",
                str(benchmarks),
                "--log-root",
                str(logs),
                "--max-connections",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "10 done, 0 failed" in result.stdout
        for endpoint in fleet.endpoints:
            assert endpoint.stats.completions == 8, endpoint.multiplier
            assert 1 <= endpoint.stats.peak_in_flight <= 2, endpoint.multiplier
    from steerbench.results.aggregate import aggregate

    rows = aggregate(str(logs)).rows
    assert len(rows) == 10
    for row in rows:
        assert row["accuracy"] == pytest.approx(expected_accuracy(float(row["multiplier"])))


def test_header_reader_gives_inspects_header_and_reports_damage(study: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner
    from inspect_ai.log import list_eval_logs, read_eval_log

    from steerbench.cli import main
    from steerbench.logs.headers import read_log_headers

    result = CliRunner().invoke(
        main,
        [
            "run",
            "--deployments",
            str(study["deployments"]),
            "--benchmarks",
            str(study["benchmarks"]),
            "--log-root",
            str(study["logs"]),
            "--workers",
            "1",
            "--benchmark",
            "Arithmetic",
            "--multiplier",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    (location,) = [info.name for info in list_eval_logs(str(study["logs"]), recursive=True)]
    damaged = tmp_path / "damaged.eval"
    damaged.write_bytes(Path(location.removeprefix("file://")).read_bytes()[:-100])
    fast, broken = read_log_headers([location, str(damaged)])
    slow = read_eval_log(location, header_only=True)
    assert fast.model_dump(exclude={"reductions"}) == slow.model_dump(exclude={"reductions"})
    assert fast.results.scores[0].metrics["accuracy"].value == pytest.approx(expected_accuracy(0.5))
    assert isinstance(broken, Exception)
