"""scripts/run_benchmarks.sh (one screen session per multiplier) and scripts/slurm_benchmarks.sbatch
(one Slurm array task per shard), run for real with bash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.helpers import REPO, toy_benchmarks, toy_responder, write_jsonl

from steerbench.cli import main
from steerbench.sim.simulator import SimulatedFleet

SCRIPTS = REPO / "scripts"
RUN_BENCHMARKS = SCRIPTS / "run_benchmarks.sh"
SLURM = SCRIPTS / "slurm_benchmarks.sbatch"
BIN = Path(sys.executable).parent
BASH = shutil.which("bash") or "/bin/bash"


def script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    screens = tmp_path / "screens"  # a private screen socket folder: our sessions only
    screens.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        "STEERBENCH": str(BIN / "steerbench"),
        "SCREENDIR": str(screens),
        "INSPECT_LOG_LEVEL": "error",
        **extra,
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_script(script: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASH, str(script), *args], env=env, capture_output=True, text=True, timeout=timeout)


def sessions(env: dict[str, str]) -> list[str]:
    listing = subprocess.run(["screen", "-ls"], env=env, capture_output=True, text=True).stdout
    return [line.split()[0].split(".", 1)[1] for line in listing.splitlines() if line.startswith("\t")]


def fake_deployments(path: Path, multipliers: list[str]) -> Path:
    return write_jsonl(
        path,
        [
            {"multiplier": m, "url": f"http://127.0.0.1:{9000 + i}/v1/", "key": "${SOME_KEY}"}
            for i, m in enumerate(multipliers)
        ],
    )


# ---------------------------------------------------------------- run_benchmarks.sh


def test_dry_run_prints_one_session_per_listed_multiplier(tmp_path: Path) -> None:
    fake_deployments(tmp_path / "deployments.jsonl", ["2", "-0.25", "0.0"])
    toy_benchmarks(tmp_path / "benchmarks.jsonl")
    result = run_script(
        RUN_BENCHMARKS, "--dry-run", "--", "--limit", "3", "--log-root", "s3://b/study", env=script_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    planned = [line for line in result.stdout.splitlines() if line.startswith("would run: screen -dmS ")]
    # in numeric order, named after the multipliers exactly as the file writes them
    assert [line.split()[4] for line in planned] == ["steerbench_m-0.25", "steerbench_m0.0", "steerbench_m2"]
    for line, multiplier in zip(planned, ["-0.25", "0.0", "2"]):
        command = line.replace("\\ ", " ")
        assert (
            f"run --multiplier {multiplier} --deployments deployments.jsonl --benchmarks benchmarks.jsonl "
            "--limit 3 --log-root s3://b/study" in command
        )
        assert f"tee -a screen_logs/steerbench_m{multiplier}.log" in command
    assert "dry run: nothing started" in result.stdout
    assert not (tmp_path / "screen_logs").exists()
    if shutil.which("screen"):
        assert sessions(script_env(tmp_path)) == []


def test_bad_input_stops_before_any_session(tmp_path: Path) -> None:
    env = script_env(tmp_path)
    toy_benchmarks(tmp_path / "benchmarks.jsonl")
    write_jsonl(tmp_path / "deployments.jsonl", [{"multiplier": "0", "url": "ftp://x", "key": "k"}])
    invalid = run_script(RUN_BENCHMARKS, "--dry-run", env=env)
    assert invalid.returncode == 2
    # without screen a dry run also notes that a real run needs it: that line is not the error
    errors = [line for line in invalid.stderr.splitlines() if not line.startswith("note: screen is not installed")]
    assert len(errors) == 1 and "deployments.jsonl" in errors[0] and "'url'" in errors[0], invalid.stderr
    assert "would run" not in invalid.stdout

    fake_deployments(tmp_path / "deployments.jsonl", ["0.0"])
    bad_flag = run_script(RUN_BENCHMARKS, "--dry-run", "--", "--limit", "0", env=env)  # checked by steerbench run
    assert bad_flag.returncode == 2 and "--limit" in bad_flag.stderr
    chooses = run_script(RUN_BENCHMARKS, "--", "--multiplier", "1", env=env)
    assert chooses.returncode == 2 and "must not choose multipliers" in chooses.stderr
    unknown = run_script(RUN_BENCHMARKS, "--limit", "3", env=env)
    assert unknown.returncode == 2 and "arguments for steerbench run go after --" in unknown.stderr


def test_screen_is_required_for_a_real_launch(tmp_path: Path) -> None:
    only_steerbench = tmp_path / "bin"
    only_steerbench.mkdir()
    (only_steerbench / "steerbench").symlink_to(BIN / "steerbench")
    fake_deployments(tmp_path / "deployments.jsonl", ["0.0"])
    env = {**script_env(tmp_path), "PATH": str(only_steerbench)}  # no screen on this PATH
    result = run_script(RUN_BENCHMARKS, env=env)
    assert result.returncode == 1
    assert "screen is not installed" in result.stderr
    assert not (tmp_path / "screen_logs").exists()


@pytest.mark.skipif(
    shutil.which("screen") is None,
    reason="screen is not installed (Debian/Ubuntu: apt-get install screen); the launch needs it",
)
def test_launches_one_detached_screen_per_multiplier(tmp_path: Path) -> None:
    env = script_env(tmp_path)
    with SimulatedFleet([-0.5, 1.0], toy_responder) as fleet:
        fleet.write_deployments(tmp_path / "deployments.jsonl")
        toy_benchmarks(tmp_path / "benchmarks.jsonl")
        result = run_script(
            RUN_BENCHMARKS,
            "--prefix",
            "sbtest",
            "--session-logs",
            "session-logs",
            "--",
            "--limit",
            "2",
            "--workers",
            "1",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert "started: multiplier -0.5 in screen session sbtest_m-0.5" in result.stdout
        assert "started: multiplier 1.0 in screen session sbtest_m1.0" in result.stdout
        assert "screen -ls" in result.stdout and "screen -r sbtest_m-0.5" in result.stdout
        deadline = time.monotonic() + 150
        while sessions(env) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = sessions(env)
        for name in left:  # ours, by name, in our private SCREENDIR
            subprocess.run(["screen", "-S", name, "-X", "quit"], env=env)
        assert not left, "screen sessions did not finish in time"
        # each session ran its own multiplier only
        assert [e.stats.completions for e in fleet.endpoints] == [4, 4]

    for multiplier in ("-0.5", "1.0"):
        log = (tmp_path / "session-logs" / f"sbtest_m{multiplier}.log").read_text()
        first = log.splitlines()[0]
        assert f"steerbench run --multiplier {multiplier} --deployments deployments.jsonl" in first
        assert "--limit 2 --workers 1" in first
        assert f"[multiplier {multiplier}] Arithmetic: success 2/2" in log
        assert log.rstrip().endswith("exit status 0")
        for endpoint in fleet.endpoints:
            assert endpoint.key not in log
    status = CliRunner().invoke(main, ["status", "--json"])
    assert json.loads(status.stdout)["counts"] == {"done": 4, "partial": 0, "failed": 0, "running": 0, "missing": 0}


# ---------------------------------------------------------------- slurm_benchmarks.sbatch


def plan_labels(output: str) -> list[tuple[str, str]]:
    """(benchmark, multiplier) of every cell a dry run lists."""
    cells = []
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("  ") and len(parts) > 1 and parts[1].startswith("m="):
            cells.append((parts[0], parts[1][2:] or parts[2]))
    return cells


def test_slurm_array_task_runs_its_shard(tmp_path: Path) -> None:
    from steerbench.core.plan import RunOptions
    from steerbench.execution.study import load_plan

    fake_deployments(tmp_path / "deployments.jsonl", ["-1.0", "0.0", "1.0"])
    toy_benchmarks(tmp_path / "benchmarks.jsonl")
    env = script_env(
        tmp_path,
        SLURM_ARRAY_TASK_ID="2",
        SLURM_ARRAY_TASK_COUNT="3",
        SLURM_CPUS_PER_TASK="2",
        STEERBENCH_LOG_ROOT="s3://bucket/shared",
    )
    result = run_script(SLURM, "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "steerbench shard 2/3" in result.stdout and "log root s3://bucket/shared" in result.stdout
    assert "shard=2/3" in result.stdout and "-> s3://bucket/shared/" in result.stdout
    expected = load_plan(
        tmp_path / "deployments.jsonl", tmp_path / "benchmarks.jsonl", RunOptions(all=True, shard=(2, 3))
    ).cells
    assert sorted(plan_labels(result.stdout)) == sorted((c.label, c.multiplier.label) for c in expected)

    # re-running one shard alone keeps the shard count it was given
    alone = {**env, "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "1", "STEERBENCH_SHARDS": "3"}
    assert "steerbench shard 3/3" in run_script(SLURM, "--dry-run", env=alone).stdout


def test_slurm_script_refuses_what_is_not_an_array_task(tmp_path: Path) -> None:
    env = script_env(tmp_path)
    env.pop("SLURM_ARRAY_TASK_ID", None)
    outside = run_script(SLURM, env=env)
    assert outside.returncode == 2 and "submit this as a job array" in outside.stderr
    zero_based = run_script(SLURM, env={**env, "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert zero_based.returncode == 2 and "outside 1..4" in zero_based.stderr


@pytest.mark.skipif(
    shutil.which("screen") is None,
    reason="screen is not installed (Debian/Ubuntu: apt-get install screen); the test needs a session",
)
def test_a_multiplier_whose_session_still_runs_is_skipped(tmp_path: Path) -> None:
    env = script_env(tmp_path)
    fake_deployments(tmp_path / "deployments.jsonl", ["0.0", "1.0"])
    toy_benchmarks(tmp_path / "benchmarks.jsonl")
    subprocess.run(["screen", "-dmS", "steerbench_m1.0", "sleep", "60"], env=env, check=True)
    try:
        result = run_script(RUN_BENCHMARKS, "--dry-run", env=env)
    finally:
        subprocess.run(["screen", "-S", "steerbench_m1.0", "-X", "quit"], env=env)
    assert result.returncode == 0, result.stderr
    assert "skip: multiplier 1.0 is still running in screen session steerbench_m1.0" in result.stdout
    assert [line.split()[4] for line in result.stdout.splitlines() if line.startswith("would run")] == [
        "steerbench_m0.0"
    ]
