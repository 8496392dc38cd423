"""`steerbench status`: the grid of done / partial / failed / running / missing cells, from log headers."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.helpers import toy_benchmarks, toy_responder

from steerbench.cli import main
from steerbench.core.config import Multiplier
from steerbench.execution.locks import multiplier_locks
from steerbench.sim.simulator import SimulatedFleet
from steerbench.results.status import INTERRUPTED

GRID_MULTIPLIERS = [0.0, 0.5, 1.0]  # 0.5 is deployed but never run: its cells are missing


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of multipliers 0.0 and 1.0 (four cells) against the simulator; 0.5 left out."""
    root = tmp_path_factory.mktemp("status_study")
    with pytest.MonkeyPatch.context() as mp, SimulatedFleet(GRID_MULTIPLIERS, toy_responder) as fleet:
        mp.setenv("INSPECT_LOG_LEVEL", "error")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        fleet.write_deployments(root / "deployments.jsonl")
        toy_benchmarks(root / "benchmarks.jsonl")
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--multiplier",
                "0.0",
                "--multiplier",
                "1.0",
                "--workers",
                "1",
                "--deployments",
                str(root / "deployments.jsonl"),
                "--benchmarks",
                str(root / "benchmarks.jsonl"),
                "--log-root",
                str(root / "logs"),
            ],
        )
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def study(tmp_path: Path, finished_run: Path) -> Path:
    """A private copy of the finished run that a test may change."""
    for name in ("deployments.jsonl", "benchmarks.jsonl"):
        shutil.copy(finished_run / name, tmp_path / name)
    shutil.copytree(finished_run / "logs", tmp_path / "logs")
    return tmp_path


def status_json(root: Path, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["status", "--json", "--log-root", str(root / "logs"), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def state_of(report: dict, benchmark: str, multiplier: float) -> dict:
    (cell,) = [c for c in report["cells"] if c["benchmark"] == benchmark and float(c["multiplier"]) == multiplier]
    return cell


def log_of(root: Path, category: str, multiplier: str) -> Path:
    (path,) = (root / "logs" / category / f"multiplier_{multiplier}").glob("*.eval")
    return path


def rewrite_log(path: Path, destination: Path | None = None, multiplier: float | None = None, **changes) -> Path:
    """Rewrite a real log with Inspect's own writer, changing its status, results or error."""
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(str(path))
    for name, value in changes.items():
        setattr(log, name, value)
    if multiplier is not None:  # the same eval, as if it had run against another multiplier
        meta = log.eval.metadata["steerbench"]
        meta["multiplier"], meta["multiplier_value"] = repr(multiplier), multiplier
    target = destination or path
    target.parent.mkdir(parents=True, exist_ok=True)
    write_eval_log(log, str(target))
    return target


def test_grid_shows_done_and_missing_cells(study: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--log-root", str(study / "logs")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("benchmark"))
    assert header.split() == ["benchmark", "0.0", "0.5", "1.0"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] in (["Arithmetic"], ["Capitals"])}
    assert rows == {"Arithmetic": ["done", "-", "done"], "Capitals": ["done", "-", "done"]}
    assert "6 cell(s): 4 done, 0 partial, 0 failed, 0 running, 2 missing" in result.output


def test_every_state_with_its_detail(study: Path) -> None:
    from inspect_ai.log import EvalError

    # Arithmetic at 1.0 failed; Capitals at 1.0 was cancelled after 2 of 4 samples
    rewrite_log(
        log_of(study, "Math", "1.0"),
        status="error",
        error=EvalError(
            message="RuntimeError: the endpoint went away\nsecond line", traceback="tb", traceback_ansi="tb"
        ),
    )
    capitals = rewrite_log(log_of(study, "Knowledge", "1.0"), status="cancelled")
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(str(capitals))
    log.results.completed_samples = 2
    write_eval_log(log, str(capitals))
    # at 0.5: both evals are in progress ("started" logs)
    for category, task in (("Math", "arithmetic"), ("Knowledge", "capitals")):
        started = study / f"logs/{category}/multiplier_0.5/2026-01-01T00-00-00-00-00_{task}_x.eval"
        rewrite_log(log_of(study, category, "0.0"), started, multiplier=0.5, status="started", results=None)
    # Capitals at 0.0: a success in which one sample errored
    log = read_eval_log(str(log_of(study, "Knowledge", "0.0")))
    log.results.completed_samples = 3
    write_eval_log(log, str(log_of(study, "Knowledge", "0.0")))

    with multiplier_locks(str(study / "logs"), [Multiplier(0.5, "0.5")]):
        report = status_json(study)
    assert report["running_detection"] == "locks" and report["lock_holders"] == {"0.5": f"pid {os.getpid()}"}
    assert report["counts"] == {"done": 1, "partial": 2, "failed": 1, "running": 2, "missing": 0}
    assert state_of(report, "Arithmetic", 0.0)["state"] == "done"
    assert {k: state_of(report, "Capitals", 0.0)[k] for k in ("state", "completed_samples", "total_samples")} == {
        "state": "partial",
        "completed_samples": 3,
        "total_samples": 4,
    }
    assert state_of(report, "Arithmetic", 1.0)["state"] == "failed"
    assert state_of(report, "Arithmetic", 1.0)["error"] == "RuntimeError: the endpoint went away"
    assert (state_of(report, "Capitals", 1.0)["state"], state_of(report, "Capitals", 1.0)["completed_samples"]) == (
        "partial",
        2,
    )
    assert state_of(report, "Arithmetic", 0.5)["state"] == state_of(report, "Capitals", 0.5)["state"] == "running"

    # the text grid says the same, and lists each failure with its first error line
    with multiplier_locks(str(study / "logs"), [Multiplier(0.5, "0.5")]):
        text = CliRunner().invoke(main, ["status", "--log-root", str(study / "logs")]).output
    rows = {
        line.split()[0]: line.split()[1:]
        for line in text.splitlines()
        if line.split()[:1] in (["Arithmetic"], ["Capitals"])
    }
    assert rows["Arithmetic"] == ["done", "running", "FAILED"]
    assert rows["Capitals"] == ["partial", "3/4", "running", "partial", "2/4"]
    assert "failed: Arithmetic at multiplier 1.0: RuntimeError: the endpoint went away" in text
    assert "second line" not in text

    # with no live process holding 0.5's lock, its "started" logs were left by a run that is gone
    after = status_json(study)
    for benchmark in ("Arithmetic", "Capitals"):
        assert (state_of(after, benchmark, 0.5)["state"], state_of(after, benchmark, 0.5)["error"]) == (
            "failed",
            INTERRUPTED,
        )

    # a lock last taken on another machine sharing this folder cannot be checked from here
    (study / "logs/.steerbench-locks/multiplier_0.5.shard-1-of-2.lock").write_text("4242 another-node")
    assert state_of(status_json(study), "Arithmetic", 0.5)["state"] == "running"


def test_reads_only_headers(study: Path) -> None:
    """Samples that cannot be read do not matter: status never opens them."""
    path = log_of(study, "Math", "0.0")
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, b"\x00 not json" if info.filename.startswith("samples/") else data)
    from inspect_ai.log import read_eval_log

    with pytest.raises(Exception):  # noqa: B017 (whichever error Inspect raises; the header read below must not)
        read_eval_log(str(path))  # a full read fails ...
    assert state_of(status_json(study), "Arithmetic", 0.0)["state"] == "done"  # ... the header read does not


def test_grid_from_logs_alone_and_unreadable_logs(study: Path) -> None:
    (study / "logs/Math/multiplier_0.0/2026-01-01T00-00-00-00-00_broken_x.eval").write_bytes(b"not a zip")
    result = CliRunner().invoke(
        main,
        ["status", "--log-root", str(study / "logs"), "--deployments", "absent.jsonl", "--benchmarks", "absent.jsonl"],
    )
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("benchmark"))
    assert header.split() == ["benchmark", "0.0", "1.0"]
    assert "4 cell(s): 4 done, 0 partial, 0 failed, 0 running, 0 missing" in result.output
    assert "warning: skipped unreadable log" in result.output and "broken_x.eval" in result.output


def test_empty_log_root_lists_every_planned_cell_as_missing(study: Path) -> None:
    report = status_json(study, "--log-root", str(study / "nothing-here"))
    assert report["counts"]["missing"] == 6 and len(report["cells"]) == 6


def test_bad_deployments_file_is_one_line_and_exit_2(study: Path) -> None:
    (study / "deployments.jsonl").write_text('{"multiplier": "x", "url": "http://a/v1", "key": "k"}\n')
    result = CliRunner().invoke(main, ["status", "--log-root", str(study / "logs")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "deployments.jsonl" in result.output and "'multiplier'" in result.output
