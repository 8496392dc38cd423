"""Logs on S3 and many machines: run, resume, status, aggregate and shards against a real
S3-compatible server (moto's server mode) on 127.0.0.1, started by these tests."""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.helpers import REPO, TASKS_FILE, expected_accuracy, toy_benchmarks, toy_responder, write_jsonl

from steerbench.cli import main
from steerbench.sim.simulator import SimulatedFleet

moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[s3]')")

SCRIPTS = REPO / "scripts"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on loopback; the AWS settings that point s3fs and boto at it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on the terminal
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in settings.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        yield settings
    server.stop()


def make_bucket(name: str) -> str:
    import boto3

    boto3.client("s3").create_bucket(Bucket=name)
    return name


def bucket_contents(bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, with .eval archives (zip) unpacked member by member."""
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    found: dict[str, bytes] = {}
    for name in fs.find(bucket):
        data = fs.cat_file(name)
        found[name] = data
        if name.endswith(".eval"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    found[f"{name}/{member}"] = archive.read(member)
    return found


def eval_objects(bucket: str) -> list[str]:
    return sorted(name for name in bucket_contents(bucket) if name.endswith(".eval"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "INSPECT_LOG_LEVEL": "error", **extra}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# ---------------------------------------------------------------- one machine, logs in a bucket


def echo_key_once(endpoint, number: int) -> str | None:
    # request 2 is refused with an error body that quotes the Authorization header, key and all
    return "401" if number == 2 else None


def test_run_resume_status_and_aggregate_straight_from_the_bucket(study_files, s3) -> None:
    bucket = make_bucket("steer-run")
    root = f"s3://{bucket}/study"
    fleet, _files = study_files
    keys = [e.key for e in fleet.endpoints]

    first = CliRunner().invoke(
        main, ["run", "--all", "--workers", "1", "--log-root", root, "--benchmark", "Arithmetic"]
    )
    assert first.exit_code == 0, first.output
    assert all(e.stats.requests > e.stats.completions for e in fleet.endpoints)  # the key was echoed
    # resume: only the missing benchmark runs; the finished one sends nothing again
    arithmetic_logs = eval_objects(bucket)
    sent = [e.stats.completions for e in fleet.endpoints]
    second = CliRunner().invoke(main, ["run", "--all", "--workers", "1", "--log-root", root])
    assert second.exit_code == 0, second.output
    assert [e.stats.completions - before for e, before in zip(fleet.endpoints, sent)] == [4, 4]  # Capitals only
    assert set(arithmetic_logs) < set(eval_objects(bucket)) and len(eval_objects(bucket)) == 4

    # no key anywhere in the bucket, though a server put one in an error message
    contents = bucket_contents(bucket)
    assert not [name for name, data in contents.items() for key in keys if key.encode() in data]
    assert any(b"Bearer ***" in data for data in contents.values())

    # status and aggregate read the bucket directly
    status = CliRunner().invoke(main, ["status", "--log-root", root])
    assert status.exit_code == 0, status.output
    assert "4 cell(s): 4 done, 0 partial, 0 failed, 0 running, 0 missing" in status.output
    aggregated = CliRunner().invoke(main, ["aggregate", "--log-root", root, "--output", "out.csv"])
    assert aggregated.exit_code == 0, aggregated.output
    rows = read_csv(Path("out.csv"))
    assert sorted((r["benchmark"], float(r["multiplier"]), float(r["accuracy"])) for r in rows) == sorted(
        (b, m, expected_accuracy(m)) for b in ("Arithmetic", "Capitals") for m in (0.0, 1.0)
    )
    assert all(r["status"] == "success" and r["log_file"].startswith(root) for r in rows)
    # the output-health sidecars went into the bucket next to their logs and were read back from it
    assert sum(name.endswith(".eval.health.jsonl") for name in contents) == 4
    assert all(r["output_truncated_rate"] == "0.0" and float(r["output_tokens_mean"]) >= 1 for r in rows)


@pytest.fixture
def study_files(tmp_path: Path) -> Iterator[tuple[SimulatedFleet, dict[str, Path]]]:
    with SimulatedFleet([0.0, 1.0], toy_responder, fault=echo_key_once) as fleet:
        fleet.write_deployments(tmp_path / "deployments.jsonl")
        yield (
            fleet,
            {
                "deployments": tmp_path / "deployments.jsonl",
                "benchmarks": toy_benchmarks(tmp_path / "benchmarks.jsonl"),
            },
        )


def test_a_bucket_that_does_not_exist_stops_the_run_before_any_request(study, s3) -> None:
    result = CliRunner().invoke(main, ["run", "--all", "--workers", "1", "--log-root", "s3://no-such-bucket/study"])
    assert result.exit_code == 1
    assert "log root s3://no-such-bucket/study is not writable" in result.output
    # status and aggregate of a root that holds nothing: every planned cell is missing
    status = CliRunner().invoke(main, ["status", "--json", "--log-root", "s3://no-such-bucket/study"])
    assert status.exit_code == 0 and '"missing": 10' in status.stdout


def test_an_unknown_storage_protocol_is_a_user_error(study) -> None:
    for command in (["run", "--all"], ["status"], ["aggregate"]):
        result = CliRunner().invoke(main, [*command, "--log-root", "nope://bucket/logs"])
        assert result.exit_code == 2, result.output
        assert "nope:// is not a known storage protocol" in result.output


# ---------------------------------------------------------------- many machines


def shard_benchmarks(path: Path) -> Path:
    """Three benchmarks, two of them in one category, so that shards share log folders."""
    return write_jsonl(
        path,
        [
            {"name": "Arithmetic", "eval_name": f"{TASKS_FILE}@arithmetic", "category": "Math", "shots": 0},
            {
                "name": "Arithmetic10",
                "eval_name": f"{TASKS_FILE}@arithmetic",
                "category": "Math",
                "shots": 0,
                "task_args": {"offset": 10},
            },
            {"name": "Capitals", "eval_name": f"{TASKS_FILE}@capitals", "category": "Knowledge", "shots": 2},
        ],
    )


def shard_plan(deployments: Path, benchmarks: Path, shard: tuple[int, int] | None):
    from steerbench.core.plan import RunOptions
    from steerbench.execution.study import load_plan

    return load_plan(deployments, benchmarks, RunOptions(all=True, shard=shard))


def test_two_shard_processes_on_one_bucket_make_one_complete_aggregate(tmp_path: Path, s3) -> None:
    bucket = make_bucket("steer-shards")
    root = f"s3://{bucket}/study"
    benchmarks = shard_benchmarks(tmp_path / "benchmarks.jsonl")
    with SimulatedFleet([0.0, 1.0], toy_responder) as fleet:
        fleet.write_deployments(tmp_path / "deployments.jsonl")
        # the premise: the shards split at least one log folder between them
        halves = [shard_plan(tmp_path / "deployments.jsonl", benchmarks, (i, 2)).cells for i in (1, 2)]
        assert {c.folder for c in halves[0]} & {c.folder for c in halves[1]}
        machines = [
            subprocess.Popen(
                [str(BIN / "steerbench"), "run", "--all", "--shard", f"{i}/2", "--workers", "1", "--log-root", root],
                cwd=tmp_path,
                env=subprocess_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in (1, 2)
        ]
        outputs = [m.communicate(timeout=240)[0] for m in machines]
        assert [m.returncode for m in machines] == [0, 0], outputs
        # each cell ran once: every endpoint answered exactly its 3 cells x 4 samples
        assert [e.stats.completions for e in fleet.endpoints] == [12, 12]
        # re-running a shard resumes it: nothing left to send
        again = CliRunner().invoke(main, ["run", "--all", "--shard", "2/2", "--workers", "1", "--log-root", root])
        assert again.exit_code == 0, again.output
        assert [e.stats.completions for e in fleet.endpoints] == [12, 12]

    result = CliRunner().invoke(main, ["aggregate", "--log-root", root, "--output", "all.csv"])
    assert result.exit_code == 0, result.output
    assert "missing" not in result.output and "not successful" not in result.output
    rows = read_csv(Path("all.csv"))
    expected = sorted(itertools.product(("Arithmetic", "Arithmetic10", "Capitals"), (0.0, 1.0)))
    assert sorted((r["benchmark"], float(r["multiplier"])) for r in rows) == expected
    # the toy responder gets Arithmetic10's questions (numbers 11-14) wrong at every multiplier
    for r in rows:
        expected_score = 0.0 if r["benchmark"] == "Arithmetic10" else expected_accuracy(float(r["multiplier"]))
        assert float(r["accuracy"]) == expected_score, r
    assert all(r["status"] == "success" and r["n_samples"] == "4" for r in rows)
    status = CliRunner().invoke(main, ["status", "--log-root", root])
    assert "6 cell(s): 6 done, 0 partial, 0 failed, 0 running, 0 missing" in status.output


# ---------------------------------------------------------------- uploading local logs


def test_upload_script_syncs_local_logs_to_the_bucket(study, s3) -> None:
    run = CliRunner().invoke(main, ["run", "--multiplier", "0.0", "--workers", "1", "--limit", "2"])
    assert run.exit_code == 0, run.output
    local = CliRunner().invoke(main, ["aggregate", "--output", "local.csv"])
    assert local.exit_code == 0
    bucket = make_bucket("steer-upload")
    script = [str(SCRIPTS / "upload_benchmarks_s3.sh")]
    env = subprocess_env(PYTHON=sys.executable)

    dry = subprocess.run(
        [*script, "--dry-run", "logs", f"s3://{bucket}/study"], env=env, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert "would upload" in dry.stdout and eval_objects(bucket) == []

    first = subprocess.run(
        [*script, f"s3://{bucket}/study"], env=env, capture_output=True, text=True
    )  # logs/ by default
    assert first.returncode == 0, first.stderr
    local_files = sorted(
        p.relative_to("logs").as_posix()
        for p in Path("logs").rglob("*")
        if p.is_file() and ".steerbench-locks" not in p.parts
    )
    objects = [n for n in bucket_contents(bucket) if ".eval/" not in n]  # not the members of archives
    assert sorted(n.split("/study/", 1)[1] for n in objects) == local_files
    assert f"uploaded {len(local_files)} file(s), 0 already there" in first.stdout
    second = subprocess.run([*script, "logs", f"s3://{bucket}/study"], env=env, capture_output=True, text=True)
    assert f"uploaded 0 file(s), {len(local_files)} already there" in second.stdout

    # the bucket now answers like the local folder did
    remote = CliRunner().invoke(main, ["aggregate", "--log-root", f"s3://{bucket}/study", "--output", "remote.csv"])
    assert remote.exit_code == 0, remote.output
    strip = lambda rows: [{k: v for k, v in r.items() if k != "log_file"} for r in rows]  # noqa: E731
    assert strip(read_csv(Path("remote.csv"))) == strip(read_csv(Path("local.csv")))

    bad = subprocess.run([*script, "logs", "bucket-without-scheme"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "s3://bucket/prefix" in bad.stderr
