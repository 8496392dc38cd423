"""Hostile servers and hostile operators: steerbench must finish the grid with exactly the
right scores, lose nothing, and never redo finished work for nothing.

Every server is a SimulatedEndpoint on 127.0.0.1. Faults are injected on a fixed schedule of
request numbers (so every test sees them, and none is flaky), and each test asserts that the
faults really happened. Request retries wait --retry-wait (0.1 s) instead of
Inspect's exponential backoff (3 s and up), which keeps each test within seconds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.helpers import expected_accuracy, toy_benchmarks, toy_responder, write_jsonl

from steerbench.cli import main
from steerbench.sim.simulator import SimulatedEndpoint, SimulatedFleet

MULTIPLIERS = [-1.0, 0.0, 0.5]
BENCHMARKS = ("Arithmetic", "Capitals")
RETRY_WAIT = ("--retry-wait", "0.1")  # seconds between request retries, instead of Inspect's backoff


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Inspect's sample buffers and traces go here instead of the home folder
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def every(period: int, *faults: str) -> Callable[[SimulatedEndpoint, int], str | None]:
    """Fault schedule: request numbers 2, 2+period/len, ... of every `period` get the faults in turn.
    `every(13, "500", "503")` fails 2 of each 13 requests (15%), and request 2 always fails."""
    step = period // len(faults)
    slots = {2 + i * step: fault for i, fault in enumerate(faults)}

    def fault(endpoint: SimulatedEndpoint, number: int) -> str | None:
        return slots.get(number % period)

    return fault


def write_study(root: Path, endpoints: list[SimulatedEndpoint]) -> dict[str, Path]:
    deployments = write_jsonl(root / "deployments.jsonl", [e.deployment_line() for e in endpoints])
    return {"deployments": deployments, "benchmarks": toy_benchmarks(root / "benchmarks.jsonl"), "logs": root / "logs"}


def run_in_process(study: dict[str, Path], *extra: str) -> Any:
    """`steerbench run` in this process (Inspect already imported: fast); --all unless
    `--multiplier` is among the extra arguments, one worker unless `--workers` is."""
    selection = [] if "--multiplier" in extra else ["--all"]
    workers = [] if "--workers" in extra else ["--workers", "1"]
    args = [
        "run",
        *selection,
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
        "--log-root",
        str(study["logs"]),
        *workers,
        *RETRY_WAIT,
        *extra,
    ]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def run_subprocess(study: dict[str, Path], *extra: str, wait: bool = True) -> Any:
    """`steerbench run` as its own process, to kill it or run it beside another."""
    selection = [] if "--multiplier" in extra else ["--all"]
    args = [
        sys.executable,
        "-m",
        "steerbench.cli",
        "run",
        *selection,
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
        "--log-root",
        str(study["logs"]),
        *RETRY_WAIT,
        *extra,
    ]
    if wait:
        return subprocess.run(args, capture_output=True, text=True, timeout=120)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_complete_grid(
    logs: Path,
    multipliers: list[float],
    benchmarks: tuple[str, ...] = BENCHMARKS,
    samples: int = 4,
    accuracy: Callable[[float], float] = expected_accuracy,
) -> None:
    """One successful log per cell, every sample scored, and exactly the expected accuracy."""
    from steerbench.results.aggregate import aggregate

    result = aggregate(str(logs))
    assert result.skipped == []
    cells = {(r["benchmark"], float(r["multiplier"])): r for r in result.rows}
    assert set(cells) == {(b, m) for b in benchmarks for m in multipliers}
    for (benchmark, multiplier), row in cells.items():
        assert row["status"] == "success", row
        assert row["completed_samples"] == samples == row["n_samples"], row
        assert row["accuracy"] == pytest.approx(accuracy(multiplier)), (benchmark, multiplier)


def eval_logs(logs: Path) -> list[Path]:
    return sorted(logs.rglob("*.eval"))


def assert_logs_readable(logs: Path) -> None:
    """No corrupt log: every .eval under the root reads completely, samples included."""
    from inspect_ai.log import read_eval_log

    for path in eval_logs(logs):
        log = read_eval_log(str(path))
        assert log.status in ("success", "started", "error", "cancelled"), path


# ---------------------------------------------------------------- server faults


@pytest.mark.parametrize(
    "faults",
    [("500", "503"), ("drop", "truncate")],
    ids=["http-500-and-503", "dropped-before-and-mid-response"],
)
def test_grid_completes_with_exact_scores_despite_failing_requests(tmp_path: Path, faults: tuple[str, ...]) -> None:
    """2 requests in 13 (15%) fail: HTTP 500/503, or the connection is cut before the answer
    or halfway through the body."""
    with SimulatedFleet(MULTIPLIERS, toy_responder, fault=every(13, *faults)) as fleet:
        study = write_study(tmp_path, fleet.endpoints)
        result = run_in_process(study)
        assert result.exit_code == 0, result.output
        assert "6 done, 0 failed" in result.output
        assert_complete_grid(study["logs"], MULTIPLIERS)
        for endpoint in fleet.endpoints:
            # the faults happened (request 2 always fails), and were retried: more requests than answers
            assert endpoint.stats.requests > endpoint.stats.completions >= 8, endpoint.multiplier


def test_responses_slower_than_the_request_timeout_are_retried(tmp_path: Path) -> None:
    """15% of answers take 3 s; the request timeout is 1 s, so those attempts are abandoned."""
    fleet = SimulatedFleet(MULTIPLIERS[:2], toy_responder, fault=every(13, "slow", "slow"), slow_seconds=3.0)
    with fleet:
        study = write_study(tmp_path, fleet.endpoints)
        started = time.monotonic()
        result = run_in_process(study, "--request-timeout", "1")
        assert result.exit_code == 0, result.output
        assert time.monotonic() - started < 45  # never waited for a slow answer
        assert_complete_grid(study["logs"], MULTIPLIERS[:2])
        for endpoint in fleet.endpoints:
            assert endpoint.stats.requests > 8, endpoint.multiplier  # slow attempts were sent again


def test_key_rejected_mid_run_fails_the_cells_and_says_why(tmp_path: Path) -> None:
    """The preflight passes (GET /models), then every completion is rejected with HTTP 401:
    each cell fails, and the run and `status` say how many samples failed and why, not
    `error 0/0` (Inspect records no error of the eval's own for this)."""
    endpoint = SimulatedEndpoint(0.0, toy_responder, fault=lambda e, n: "401").start()
    try:
        study = write_study(tmp_path, [endpoint])
        result = run_in_process(study)
        assert result.exit_code == 1, result.output
        for benchmark in BENCHMARKS:
            line = next(row for row in result.output.splitlines() if row.startswith(benchmark))
            assert "error           0/4  4 of 4 samples failed, first: Error code: 401" in line, line
        assert endpoint.key not in result.output
        status = CliRunner().invoke(main, ["status", "--log-root", str(study["logs"])])
        assert "failed: Arithmetic at multiplier 0.0: 4 of 4 samples failed, first: Error code: 401" in status.output
    finally:
        endpoint.stop()


def test_endpoint_down_at_start_is_reported_and_a_rerun_completes(tmp_path: Path) -> None:
    """The preflight names the endpoint that is down and runs nothing; once the endpoint is
    back (here after 2 s rather than a minute), the same command completes the grid."""
    with SimulatedFleet(MULTIPLIERS[:2], toy_responder) as fleet:
        down = fleet.endpoints[1]
        study = write_study(tmp_path, fleet.endpoints)
        url = down.url
        down.stop()
        result = run_in_process(study)
        assert result.exit_code == 1
        assert f"multiplier {MULTIPLIERS[1]} ({url})" in result.stderr
        assert "unreachable" in result.stderr
        assert "Traceback" not in result.output
        assert fleet.endpoints[0].stats.requests == 0  # nothing ran, not even the healthy endpoint
        assert eval_logs(study["logs"]) == []

        back = threading.Timer(2.0, down.start)
        back.start()
        back.join()
        again = run_in_process(study)
        assert again.exit_code == 0, again.output
        assert_complete_grid(study["logs"], MULTIPLIERS[:2])


def test_endpoint_restarted_mid_run(tmp_path: Path) -> None:
    """The server process dies (open connections cut) and comes back on the same port 1 s later."""
    with SimulatedFleet(MULTIPLIERS[:2], toy_responder, latency=0.2) as fleet:
        target = fleet.endpoints[0]
        study = write_study(tmp_path, fleet.endpoints)
        restarted: dict[str, int] = {}

        def restart_after_three_answers() -> None:
            deadline = time.monotonic() + 60
            while target.stats.completions < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            restarted["answers_before"] = target.stats.completions
            target.stop(abort_connections=True)
            time.sleep(1.0)
            target.start()

        watcher = threading.Thread(target=restart_after_three_answers, daemon=True)
        watcher.start()
        result = run_in_process(study, "--max-connections", "2")
        watcher.join(timeout=5)
        assert result.exit_code == 0, result.output
        assert_complete_grid(study["logs"], MULTIPLIERS[:2])
        # the restart happened mid-run: the endpoint answered before it and after it
        assert 3 <= restarted["answers_before"] < target.stats.completions


# ---------------------------------------------------------------- killed runs

MANY_TASK = """
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import match
from inspect_ai.solver import generate


@task
def many(count: int = 30) -> Task:
    samples = [Sample(id=n, input=f"Item {n}: answer with {n}.", target=str(n)) for n in range(1, count + 1)]
    return Task(dataset=samples, solver=generate(), scorer=match(location="exact"))
"""


def echo_item(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    return re.search(r"Item (\d+)", messages[-1]["content"]).group(1)


def many_study(root: Path, endpoints: list[SimulatedEndpoint], count: int) -> dict[str, Path]:
    """One benchmark of `count` samples: enough that Inspect buffers finished samples before
    writing them to the log (it writes every 10 at this size)."""
    task_file = root / "many.py"
    task_file.write_text(MANY_TASK)
    benchmarks = write_jsonl(
        root / "benchmarks.jsonl",
        [
            {"name": "Many", "eval_name": f"{task_file}@many", "category": "Misc", "task_args": {"count": count}},
        ],
    )
    deployments = write_jsonl(root / "deployments.jsonl", [e.deployment_line() for e in endpoints])
    return {"deployments": deployments, "benchmarks": benchmarks, "logs": root / "logs"}


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_run_then_rerun_requests_no_finished_sample_again(tmp_path: Path, workers: int) -> None:
    """SIGKILL the `steerbench run` process (only it: its worker processes must die with it),
    re-run: no sample answered before the kill is requested again, beyond those in flight."""
    count, connections = 30, 2
    multipliers = [0.0, 1.0][:workers]  # two workers need two endpoints
    with SimulatedFleet(multipliers, echo_item, latency=0.1) as fleet:
        study = many_study(tmp_path, fleet.endpoints, count)
        process = run_subprocess(study, "--workers", str(workers), "--max-connections", str(connections), wait=False)
        try:
            # kill once finished samples are waiting to be written (more than 10 less than 20 answered)
            wait_until(lambda: fleet.endpoints[0].stats.completions >= 14, process, "14 answers")
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
        time.sleep(1.0)  # anything still running (an orphaned worker) would send more requests...
        answered = {e.multiplier: set(e.stats.prompts) for e in fleet.endpoints}
        counts = {e.multiplier: e.stats.requests for e in fleet.endpoints}
        time.sleep(1.5)
        assert {e.multiplier: e.stats.requests for e in fleet.endpoints} == counts, "a worker outlived the kill"
        assert 14 <= len(answered[0.0]) < count
        # the killed run's log is a readable, unfinished log
        assert_logs_readable(study["logs"])

        for endpoint in fleet.endpoints:
            endpoint.stats.prompts.clear()
        # what the killed run's endpoints answered is in the replay journal of its log folder
        journals = list(study["logs"].rglob(".steerbench-replay/*.jsonl"))
        assert len(journals) == workers and all(j.stat().st_size > 0 for j in journals)

        again = run_in_process(study, "--max-connections", str(connections))
        assert again.exit_code == 0, again.output
        # the re-run says where the answers came from, and the journal is gone once the logs hold them
        assert "answers came from the replay journal of an interrupted run" in again.output
        assert not list(study["logs"].rglob(".steerbench-replay"))
        for endpoint in fleet.endpoints:
            asked_again = answered[endpoint.multiplier] & set(endpoint.stats.prompts)
            assert len(asked_again) <= connections, (endpoint.multiplier, sorted(asked_again))
            # and everything not answered before was asked now
            assert len(answered[endpoint.multiplier] | set(endpoint.stats.prompts)) == count
        assert_complete_grid(study["logs"], multipliers, ("Many",), count, lambda m: 1.0)
        assert_logs_readable(study["logs"])


# ---------------------------------------------------------------- concurrency


def test_second_run_on_the_same_log_root_is_refused(tmp_path: Path) -> None:
    """Two `steerbench run` at once on one log root: the second is refused for the multiplier
    the first is running (a different multiplier may run beside it), and the first finishes
    with one log per cell and the right scores."""
    with SimulatedFleet([0.0, 1.0], toy_responder, latency=0.3) as fleet:
        study = write_study(tmp_path, fleet.endpoints)
        first = run_subprocess(study, "--multiplier", "0.0", "--workers", "1", "--max-connections", "1", wait=False)
        try:
            wait_until(lambda: fleet.endpoints[0].stats.completions >= 1, first, "the first answer")
            second = run_in_process(study, "--all")
            assert first.poll() is None, "the first run finished too early for this test"
            assert second.exit_code == 1
            assert "already running multiplier 0.0" in second.stderr
            assert "Traceback" not in second.output
            # --all was refused whole; another multiplier alone may run beside the first
            beside = run_in_process(study, "--multiplier", "1.0", "--max-connections", "1")
        finally:
            output, _ = first.communicate(timeout=120)
        assert beside.exit_code == 0, beside.output
        assert first.returncode == 0, output
        assert_complete_grid(study["logs"], [0.0, 1.0])
        assert len(eval_logs(study["logs"])) == 4  # one log per cell, nothing duplicated
        # the refused run sent nothing: 2 cells x 4 samples per endpoint
        assert [e.stats.completions for e in fleet.endpoints] == [8, 8]


def mixed_category_study(root: Path, endpoints: list[SimulatedEndpoint]) -> dict[str, Path]:
    """Both toy benchmarks in one category: one eval set with 8 samples ready at once."""
    study = write_study(root, endpoints)
    rows = [json.loads(line) for line in study["benchmarks"].read_text().splitlines()]
    write_jsonl(study["benchmarks"], [{**row, "category": "Mixed"} for row in rows])
    return study


def test_concurrency_per_endpoint_never_exceeds_max_connections(tmp_path: Path) -> None:
    with SimulatedFleet(MULTIPLIERS[:2], toy_responder, latency=0.4) as fleet:
        study = mixed_category_study(tmp_path, fleet.endpoints)
        result = run_in_process(study, "--max-connections", "3")
        assert result.exit_code == 0, result.output
        assert_complete_grid(study["logs"], MULTIPLIERS[:2])
        for endpoint in fleet.endpoints:
            # the limit holds, and is reached (8 samples were ready at once)
            assert endpoint.stats.peak_in_flight == 3, endpoint.multiplier


def test_concurrency_limit_holds_with_worker_processes(tmp_path: Path) -> None:
    with SimulatedFleet(MULTIPLIERS[:2], toy_responder, latency=0.4) as fleet:
        study = mixed_category_study(tmp_path, fleet.endpoints)
        result = run_in_process(study, "--workers", "2", "--max-connections", "3")
        assert result.exit_code == 0, result.output
        assert_complete_grid(study["logs"], MULTIPLIERS[:2])
        for endpoint in fleet.endpoints:
            assert 2 <= endpoint.stats.peak_in_flight <= 3, endpoint.multiplier
