"""Issue 15: a long run moves visibly. Progress lines while `run` runs (no terminal), `status`
counting a running cell from another process, a failing endpoint's errors before the run ends,
resumed cells not said to be running again, and the grouped `missing:` flags."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from steerbench.cli import main
from steerbench.sim.simulator import SimulatedEndpoint
from tests.helpers import TASKS_FILE, toy_responder, write_jsonl

QUESTIONS = 24
PROGRESS = re.compile(r"^\[multiplier 0\.0\] Arithmetic: (\d+)/(\d+) samples, (.+) samples/s, ETA (.+)$")


def study(root: Path, endpoint: SimulatedEndpoint) -> list[str]:
    deployments = write_jsonl(root / "deployments.jsonl", [endpoint.deployment_line()])
    benchmarks = write_jsonl(
        root / "benchmarks.jsonl",
        [
            {
                "name": "Arithmetic",
                "eval_name": f"{TASKS_FILE}@arithmetic",
                "category": "Math",
                "shots": 0,
                "task_args": {"questions": QUESTIONS},
            },
        ],
    )
    return ["--deployments", str(deployments), "--benchmarks", str(benchmarks), "--log-root", str(root / "logs")]


class Reader:
    """The lines of a running process's stdout, each with the time it arrived."""

    def __init__(self, process: subprocess.Popen[str]):
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def join(self) -> list[tuple[float, str]]:
        self._thread.join(timeout=30)
        return self.lines


def start_run(files: list[str], *extra: str) -> tuple[subprocess.Popen[str], Reader]:
    args = [
        sys.executable,
        "-m",
        "steerbench.cli",
        "run",
        "--all",
        *files,
        "--workers",
        "1",
        "--max-connections",
        "1",
        "--progress-every",
        "0.5",
        "--retry-wait",
        "0.1",
        *extra,
    ]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, Reader(process)


def end_of_cell(lines: list[tuple[float, str]]) -> float:
    ends = [t for t, line in lines if re.match(r"^\[multiplier 0\.0\] Arithmetic: success ", line)]
    assert ends, "\n".join(line for _, line in lines)
    return ends[0]


def test_progress_lines_and_status_counts_while_the_cell_runs(tmp_path: Path) -> None:
    endpoint = SimulatedEndpoint(0.0, toy_responder, latency=0.25).start()
    try:
        files = study(tmp_path, endpoint)
        process, reader = start_run(files)
        seen_running: list[tuple[int, int]] = []
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            # status from another process than the run's, reading what is on disk
            status = CliRunner().invoke(main, ["status", "--json", *files])
            assert status.exit_code == 0, status.output
            for cell in json.loads(status.output)["cells"]:
                if cell["state"] == "running" and cell["done"] is not None:
                    seen_running.append((cell["done"], cell["total_samples"]))
                    text = CliRunner().invoke(main, ["status", *files]).output
                    assert re.search(rf"running {cell['done']}/{QUESTIONS}|running \d+/{QUESTIONS}", text), text
            time.sleep(0.3)
        assert process.wait(timeout=60) == 0
        lines = reader.join()
        # a resumed run: the complete cell is not said to be running again
        again = CliRunner().invoke(main, ["run", "--all", *files, "--workers", "1"])
    finally:
        endpoint.stop()
    end = end_of_cell(lines)
    counts = [(t, int(m.group(1)), int(m.group(2))) for t, line in lines if (m := PROGRESS.match(line))]
    assert any(0 < done < total == QUESTIONS and t < end for t, done, total in counts), lines
    assert any(0 < done < total == QUESTIONS for done, total in seen_running), seen_running
    assert again.exit_code == 0, again.output
    assert "already complete: Arithmetic" in again.output
    assert "running Arithmetic" not in again.output


def test_a_failing_endpoint_says_so_before_the_run_ends(tmp_path: Path) -> None:
    """Every 4th request answers 500, and one is rejected with a 401 whose body echoes the key:
    the progress lines name the retries and the first error, with the key masked."""

    def fault(endpoint: SimulatedEndpoint, number: int) -> str | None:
        return "401" if number == 2 else ("500" if number % 4 == 0 else None)

    endpoint = SimulatedEndpoint(0.0, toy_responder, latency=0.2, fault=fault).start()
    try:
        files = study(tmp_path, endpoint)
        process, reader = start_run(files)
        assert process.wait(timeout=240) == 0
        lines = reader.join()
    finally:
        endpoint.stop()
    end = end_of_cell(lines)
    trouble = [(t, line) for t, line in lines if PROGRESS.match(line) and "retries, first error: HTTP 401" in line]
    assert trouble and trouble[0][0] < end, "\n".join(line for _, line in lines)
    assert "Authorization: Bearer ***" in trouble[0][1]  # the body echoed the key: masked
    assert all(endpoint.key not in line for _, line in lines)
    retries = [int(re.search(r"(\d+) retries", line).group(1)) for _, line in trouble]
    assert max(retries) > 1  # the 500s, retried, count too


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    endpoint = SimulatedEndpoint(0.0, toy_responder).start()
    try:
        files = study(tmp_path, endpoint)
        result = CliRunner().invoke(main, ["run", "--all", *files, "--workers", "1", "--quiet", "--limit", "3"])
    finally:
        endpoint.stop()
    assert result.exit_code == 0, result.output
    assert result.output.lstrip().startswith("benchmark"), result.output
    assert "[multiplier" not in result.output and "preflight" not in result.output
    assert "1 done, 0 failed" in result.output


def test_missing_cells_are_grouped_and_a_report_without_logs_fails(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "deployments.jsonl",
        [
            {"multiplier": m, "url": f"http://127.0.0.1:{9000 + i}/v1/", "key": "k"}
            for i, m in enumerate(["-1", "0", "1"])
        ],
    )
    write_jsonl(
        tmp_path / "benchmarks.jsonl",
        [
            {"name": name, "eval_name": f"{TASKS_FILE}@arithmetic", "category": "Math", "shots": 0}
            for name in ("A", "B")
        ],
    )
    files = [
        "--deployments",
        str(tmp_path / "deployments.jsonl"),
        "--benchmarks",
        str(tmp_path / "benchmarks.jsonl"),
        "--log-root",
        str(tmp_path / "logs"),
    ]
    aggregate = CliRunner().invoke(main, ["aggregate", *files, "--output", str(tmp_path / "a.csv")])
    assert aggregate.exit_code == 0, aggregate.output
    flags = [line for line in aggregate.output.splitlines() if line.startswith("flag:")]
    assert flags == ["flag: missing: 6 of 6 planned cells (every benchmark at every multiplier)"]
    report = CliRunner().invoke(
        main, ["report", *files, "--csv", str(tmp_path / "a.csv"), "--out", str(tmp_path / "o")]
    )
    assert report.exit_code == 1
    assert "no steerbench logs under" in report.output and "nothing to report" in report.output
    assert not (tmp_path / "o").exists()


def test_a_slow_cell_never_repeats_a_line_and_its_eta_moves_between_samples(tmp_path: Path) -> None:
    """One sample every ~1.2 s, a line due every 0.5 s: lines with the same count still differ,
    because the rate and ETA are taken as of the moment of printing, not of the last sample."""
    endpoint = SimulatedEndpoint(0.0, toy_responder, latency=1.2).start()
    try:
        files = study(tmp_path, endpoint)
        process, reader = start_run(files, "--limit", "6")
        assert process.wait(timeout=240) == 0
        lines = reader.join()
    finally:
        endpoint.stop()
    progress = [line for _, line in lines if PROGRESS.match(line)]
    assert len(progress) >= 4, "\n".join(line for _, line in lines)
    assert all(a != b for a, b in zip(progress, progress[1:])), progress
    counts = [PROGRESS.match(line).groups() for line in progress]  # type: ignore[union-attr]
    same_count = [(a, b) for a, b in zip(counts, counts[1:]) if a[0] == b[0] and a[3] != "-"]
    assert same_count, progress  # no sample ended between these two lines...
    # ...and the ETA moved all the same: at a fixed count it is (total - done) x elapsed / done, so it
    # grows by (total - done) / done seconds a second. It is printed in whole seconds, so only pairs
    # where that is at least 1 s over the 0.5 s (or more) between lines must show it; none may go back.
    etas = [(int(a[0]), int(a[1]), seconds(a[3]), seconds(b[3])) for a, b in same_count]
    assert all(after >= before for _, _, before, after in etas), progress
    visible = [(before, after) for done, total, before, after in etas if (total - done) / done * 0.5 >= 1]
    assert visible and all(after > before for before, after in visible), progress


def seconds(text: str) -> int:
    """`duration`'s text back to seconds: "7 s", "4m 05s", "2h 03m"."""
    if text.endswith(" s"):
        return int(text[:-2])
    big, small = text.split()
    unit = 3600 if big.endswith("h") else 60
    return int(big[:-1]) * unit + int(small[:-1]) * (60 if unit == 3600 else 1)
