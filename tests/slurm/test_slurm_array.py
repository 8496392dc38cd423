"""scripts/slurm_benchmarks.sbatch on a real Slurm (issue 16).

Needs a running Slurm whose `sinfo` answers (the slurm lane, .ci/lane_slurm.sh, starts a
one-node one with .ci/slurm/up.sh); skipped otherwise. Endpoints come from the CLI's own
simulator (`steerbench simulate`), behind a small counting proxy in this process so the tests
know how many requests every submission sent. The jobs run the real script, with the
steerbench of this venv on PATH, on the same machine (loopback for endpoints and S3).
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_benchmarks.sbatch"
BIN = Path(sys.executable).parent  # this venv's bin: steerbench is there
STEERBENCH = str(BIN / "steerbench")
TASKS = Path(__file__).with_name("echo_tasks.py")
JOB_SECONDS = 240  # the longest any one submission may take

MULTIPLIERS = [-1.0, 0.0, 1.0]
# benchmark -> (category, the multiplier each sample names); Echo holds two benchmarks, so
# shards of one multiplier share a log folder there
BENCHMARKS = {
    "EchoA": ("Echo", ["-1.00", "+0.00", "+0.00", "+1.00", "+1.00", "+1.00"]),
    "EchoB": ("Echo", ["-1.00", "-1.00", "-1.00", "+0.00"]),
    "EchoC": ("Other", ["+1.00", "+0.00", "-1.00", "-1.00", "+1.00"]),
}
SAMPLES_PER_ENDPOINT = sum(len(t) for _, t in BENCHMARKS.values())


def expected_rows() -> list[tuple[str, float, float]]:
    return sorted(
        (name, m, targets.count(f"{m:+.2f}") / len(targets))
        for name, (_, targets) in BENCHMARKS.items()
        for m in MULTIPLIERS
    )


# ------------------------------------------------------------------------------- Slurm


def _slurm_or_skip() -> None:
    for tool in ("sbatch", "sinfo", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: no Slurm here (bash .ci/slurm/up.sh starts one)")
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.skip("sinfo does not answer within 15 s: slurmctld is not running (bash .ci/slurm/up.sh)")
    if answer.returncode != 0:
        pytest.skip(f"sinfo fails: {answer.stderr.strip()[:200]} (bash .ci/slurm/up.sh starts a Slurm)")
    if not {"idle", "mixed"} & set(answer.stdout.split()):
        pytest.skip(f"no Slurm node is idle (sinfo: {' '.join(answer.stdout.split()) or 'no nodes'})")


def sbatch(
    *args: str, env: dict[str, str], cwd: Path, wait: bool = True, run_args: tuple[str, ...] = ()
) -> tuple[int, str]:
    """Submit the real script; with wait, until every task has ended. (return code, job id)."""
    command = [
        "sbatch",
        "--parsable",
        "--export=ALL",
        f"--chdir={cwd}",
        *(["--wait"] if wait else []),
        *args,
        str(SCRIPT),
        *run_args,
    ]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=JOB_SECONDS)
    job = done.stdout.strip().split(";")[0].splitlines()[0] if done.stdout.strip() else ""
    assert job.isdigit(), f"sbatch did not submit: {done.stdout}{done.stderr}"
    return done.returncode, job


def array_tasks(job: str) -> dict[str, dict[str, str]]:
    """ArrayTaskId -> scontrol's fields (JobState, ExitCode, Reason, StdOut...), no sacct needed."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    tasks = {}
    for line in shown.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        tasks[fields.get("ArrayTaskId", "")] = fields
    return tasks


def squeue_reason(job: str) -> str:
    shown = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %R"], capture_output=True, text=True, timeout=30)
    return shown.stdout.strip()


# --------------------------------------------------------------------- endpoints


class CountingProxy:
    """Forwards HTTP to one simulated endpoint and counts the chat completions it sees."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.host, self.port_upstream = parts.hostname, parts.port
        self.completions = 0
        self.delay = 0.0  # seconds each chat completion is held back (to make runs overlap)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.rstrip("/").endswith("/chat/completions"):
                    with proxy._lock:
                        proxy.completions += 1
                    time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = http.client.HTTPConnection(proxy.host, proxy.port_upstream, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for k, v in answer.getheaders():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Endpoints:
    """`steerbench simulate` in a subprocess, one counting proxy per endpoint."""

    def __init__(self, process: subprocess.Popen, lines: list[dict]):
        self.process = process
        self.proxies = {float(line["multiplier"]): CountingProxy(line["url"]) for line in lines}
        self.lines = [{**line, "url": self.proxies[float(line["multiplier"])].url} for line in lines]

    def requests(self) -> dict[float, int]:
        return {m: p.completions for m, p in self.proxies.items()}

    def total(self) -> int:
        return sum(self.requests().values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(env: dict[str, str]) -> Endpoints:
    labels = ",".join(f"{m:g}" for m in MULTIPLIERS)
    for _ in range(5):  # `simulate` takes a first port and uses the next ones: retry if taken
        process = subprocess.Popen(
            [STEERBENCH, "simulate", f"--multipliers={labels}", f"--port={_free_port()}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        lines: queue.Queue[str] = queue.Queue()
        # bound now: a retry rebinds `lines`, and this attempt's reader must not feed the next one's queue
        threading.Thread(
            target=lambda out=process.stdout, sink=lines: [sink.put(line) for line in out], daemon=True
        ).start()
        found, deadline = [], time.monotonic() + 60
        while len(found) < len(MULTIPLIERS) and time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=0.5)
                if line.strip():
                    found.append(json.loads(line))
        if len(found) == len(MULTIPLIERS):
            return Endpoints(process, found)
        process.kill()
        error = process.communicate()[1]
        if "is not free" not in error:
            raise AssertionError(f"steerbench simulate did not start: {error}")
    raise AssertionError("steerbench simulate found no free ports")


# ------------------------------------------------------------------------------ memory


class PeakMemory:
    """Peak RSS (VmHWM) and PSS of the job's steerbench processes, sampled from /proc."""

    def __init__(self, marker: str):
        self.marker, self.seen, self._stop = marker.encode(), {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if self.marker not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
                    pss = next(
                        int(line.split()[1])
                        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                        if line.startswith("Pss:")
                    )
                except (OSError, StopIteration, ValueError):
                    continue
                was = self.seen.get(pid, {"ppid": int(status["PPid"]), "hwm": 0, "pss": 0})
                self.seen[pid] = {
                    **was,
                    "hwm": max(was["hwm"], int(status["VmHWM"].split()[0])),
                    "pss": max(was["pss"], pss),
                }

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        workers = [p for p in self.seen.values() if str(p["ppid"]) in self.seen]
        mains = [p for p in self.seen.values() if str(p["ppid"]) not in self.seen]
        mb = lambda kb: f"{kb / 1024:.0f} MB"  # noqa: E731
        return (
            f"{len(mains)} main process(es): peak RSS {mb(max((p['hwm'] for p in mains), default=0))}; "
            f"{len(workers)} worker(s): peak RSS {mb(max((p['hwm'] for p in workers), default=0))}, "
            f"peak PSS {mb(max((p['pss'] for p in workers), default=0))}"
        )


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    _slurm_or_skip()
    root = tmp_path_factory.mktemp("slurm")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "INSPECT_LOG_LEVEL": "error",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "STEERBENCH_SHARDS", "STEERBENCH_LOG_ROOT"):
        env.pop(name, None)
    shutil.copy(TASKS, root / "echo_tasks.py")
    (root / "benchmarks.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "name": name,
                    "eval_name": f"{root / 'echo_tasks.py'}@echo",
                    "category": category,
                    "task_args": {"targets": ",".join(targets)},
                }
            )
            + "\n"
            for name, (category, targets) in BENCHMARKS.items()
        )
    )
    endpoints = start_simulator(env)
    (root / "deployments.jsonl").write_text("".join(json.dumps(line) + "\n" for line in endpoints.lines))
    env.update(
        STEERBENCH_DEPLOYMENTS=str(root / "deployments.jsonl"), STEERBENCH_BENCHMARKS=str(root / "benchmarks.jsonl")
    )
    try:
        yield {"root": root, "env": env, "endpoints": endpoints}
    finally:
        endpoints.process.terminate()
        endpoints.process.wait(10)
        for proxy in endpoints.proxies.values():
            proxy.stop()


def aggregate(study: dict, log_root: str, env: dict[str, str] | None = None) -> list[tuple[str, float, float]]:
    out = study["root"] / f"aggregate_{abs(hash(log_root))}.csv"
    done = subprocess.run(
        [
            STEERBENCH,
            "aggregate",
            "--log-root",
            log_root,
            "--output",
            str(out),
            "--deployments",
            str(study["root"] / "deployments.jsonl"),
            "--benchmarks",
            str(study["root"] / "benchmarks.jsonl"),
        ],
        env=env or study["env"],
        cwd=study["root"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with out.open() as f:
        return sorted((r["benchmark"], float(r["multiplier"]), float(r["accuracy"])) for r in csv.DictReader(f))


def wait_for(*jobs: str, seconds: float = JOB_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        listed = subprocess.run(
            ["squeue", "-h", "-j", ",".join(jobs), "-o", "%i"], capture_output=True, text=True, timeout=30
        )
        if listed.returncode == 0 and not listed.stdout.strip():
            return
        time.sleep(1)
    subprocess.run(["scancel", *jobs], timeout=30)
    raise AssertionError(f"jobs {jobs} still queued after {seconds} s")


def task_outputs(study: dict, tasks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {i: Path(t["StdOut"]).read_text() for i, t in tasks.items()}


# ------------------------------------------------------------------------------- tests


def test_a_job_too_big_for_the_node_pends_and_squeue_says_why(study: dict) -> None:
    """What the script's header tells a user: squeue -o %R shows why a job pends."""
    _, job = sbatch("--array=1-2", "--cpus-per-task=4096", env=study["env"], cwd=study["root"], wait=False)
    try:
        reason, deadline = "", time.monotonic() + 30
        while "PartitionConfig" not in reason and time.monotonic() < deadline:
            time.sleep(1)
            reason = squeue_reason(job)
        assert "PENDING" in reason and "PartitionConfig" in reason, reason
    finally:
        subprocess.run(["scancel", job], timeout=30)
    assert study["endpoints"].total() == 0


def test_an_array_numbered_from_1_splits_the_grid_on_a_local_root(study: dict) -> None:
    """The script's own #SBATCH sizing, unchanged, on a 2-CPU node; two shards."""
    before = study["endpoints"].total()
    memory = PeakMemory(f"{STEERBENCH}\0run\0--all\0--shard")
    started = time.monotonic()
    try:
        code, job = sbatch(
            "--array=1-2", env={**study["env"], "STEERBENCH_LOG_ROOT": str(study["root"] / "logs")}, cwd=study["root"]
        )
    finally:
        measured = memory.stop()
    seconds = time.monotonic() - started
    tasks = array_tasks(job)
    outputs = task_outputs(study, tasks)
    assert code == 0, outputs
    assert sorted(tasks) == ["1", "2"]
    assert all(t["JobState"] == "COMPLETED" and t["ExitCode"] == "0:0" for t in tasks.values()), tasks
    for i in ("1", "2"):
        assert f"steerbench shard {i}/2" in outputs[i]
    # every sample of every cell asked once, each of its own endpoint
    assert study["endpoints"].requests() == dict.fromkeys(MULTIPLIERS, SAMPLES_PER_ENDPOINT)
    assert before == 0
    assert aggregate(study, str(study["root"] / "logs")) == expected_rows()
    note = os.environ.get("STEERBENCH_SLURM_DIR")
    if note:  # the lane prints these
        with open(Path(note) / "measured.txt", "a") as f:
            f.write(f"local array 1-2 ({tasks['1'].get('NumCPUs')} CPUs per task): {seconds:.0f} s; {measured}\n")


def test_shards_sharing_a_folder_all_appear_in_its_eval_set_manifest(study: dict) -> None:
    """Inspect's eval-set.json of a folder both shards wrote to lists every task with a log
    there, not only the last writer's (steerbench merges it: boundary/eval_set_manifest.py)."""
    logs = study["root"] / "logs"
    shared = []
    for manifest in logs.rglob("eval-set.json"):
        listed = len(json.loads(manifest.read_text()).get("tasks", []))
        in_logs = len(list(manifest.parent.glob("*.eval")))
        shared.append((manifest.parent.relative_to(logs).as_posix(), listed, in_logs))
    assert shared, "no eval-set.json written"
    assert any(in_logs > 1 for _, _, in_logs in shared), f"no folder was shared by two tasks: {shared}"
    assert all(listed == in_logs for _, listed, in_logs in shared), f"(folder, listed, logs): {shared}"


def test_resubmitting_one_shard_sends_nothing(study: dict) -> None:
    before = study["endpoints"].total()
    code, job = sbatch(
        "--array=2",
        env={**study["env"], "STEERBENCH_SHARDS": "2", "STEERBENCH_LOG_ROOT": str(study["root"] / "logs")},
        cwd=study["root"],
    )
    tasks = array_tasks(job)
    out = task_outputs(study, tasks)["2"]
    assert code == 0 and tasks["2"]["ExitCode"] == "0:0", out
    assert "steerbench shard 2/2" in out
    assert study["endpoints"].total() == before, out
    assert aggregate(study, str(study["root"] / "logs")) == expected_rows()


def test_an_array_not_numbered_from_1_is_refused_by_every_task_before_any_request(study: dict) -> None:
    before = study["endpoints"].total()
    fresh = study["root"] / "logs_misnumbered"
    code, job = sbatch("--array=2-3", env={**study["env"], "STEERBENCH_LOG_ROOT": str(fresh)}, cwd=study["root"])
    tasks = array_tasks(job)
    outputs = task_outputs(study, tasks)
    assert code == 2, outputs
    assert sorted(tasks) == ["2", "3"]
    for i, t in tasks.items():
        assert t["JobState"] == "FAILED" and t["ExitCode"] == "2:0", t
        lines = outputs[i].strip().splitlines()
        assert len(lines) == 1 and "--array=1-N" in lines[0] and "STEERBENCH_SHARDS=N" in lines[0], outputs[i]
    assert study["endpoints"].total() == before
    assert not fresh.exists()


def test_an_array_on_s3_splits_the_grid_and_resumes(study: dict) -> None:
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[s3]')")
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {k: v for k, v in study["env"].items() if k != "AWS_PROFILE"}
        env.update(
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            STEERBENCH_LOG_ROOT="s3://steer-slurm/study",
        )
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket="steer-slurm")
        before = study["endpoints"].requests()
        # one CPU each, so both shards run at once on this 2-CPU node
        code, job = sbatch("--array=1-2", "--cpus-per-task=1", "--mem=1G", env=env, cwd=study["root"])
        tasks = array_tasks(job)
        outputs = task_outputs(study, tasks)
        assert code == 0, outputs
        assert all(t["ExitCode"] == "0:0" for t in tasks.values()), tasks
        after = study["endpoints"].requests()
        assert {m: after[m] - before[m] for m in MULTIPLIERS} == dict.fromkeys(MULTIPLIERS, SAMPLES_PER_ENDPOINT)
        assert aggregate(study, env["STEERBENCH_LOG_ROOT"], env) == expected_rows()
        # resubmitting shard 1 of 2 on the bucket sends nothing
        code, job = sbatch(
            "--array=1", "--cpus-per-task=1", "--mem=1G", env={**env, "STEERBENCH_SHARDS": "2"}, cwd=study["root"]
        )
        assert code == 0, task_outputs(study, array_tasks(job))
        assert study["endpoints"].requests() == after
    finally:
        server.stop()


def test_two_shard_splits_never_run_one_cell_at_once(study: dict) -> None:
    """Shard 1/2 and shard 1/1 (the whole grid), submitted together on one local root, with
    slow answers so that they overlap: every cell must still be asked exactly once, and the run
    that left out cells the other held says so, in one line per cell. Both runs are given
    multipliers 0 and 1 only (shard 1/2 holds no Echo cell at -1, so both start on the same
    folder: the cells of shard 1/2 at multiplier 0)."""
    root = study["root"] / "logs_overlap"
    multipliers = [0.0, 1.0]
    deployments = study["root"] / "deployments_0_1.jsonl"
    lines = [
        json.loads(line) for line in (study["root"] / "deployments.jsonl").read_text().splitlines() if line.strip()
    ]
    deployments.write_text(
        "".join(json.dumps(line) + "\n" for line in lines if float(line["multiplier"]) in multipliers)
    )
    env = {**study["env"], "STEERBENCH_LOG_ROOT": str(root), "STEERBENCH_DEPLOYMENTS": str(deployments)}
    endpoints = study["endpoints"]
    before = endpoints.total()
    for proxy in endpoints.proxies.values():
        proxy.delay = 6.0
    try:
        one_cpu = ("--array=1", "--cpus-per-task=1", "--mem=1G")
        _, half = sbatch(
            *one_cpu,
            env={**env, "STEERBENCH_SHARDS": "2"},
            cwd=study["root"],
            wait=False,
            run_args=("--category=Echo",),
        )
        _, whole = sbatch(
            *one_cpu,
            env={**env, "STEERBENCH_SHARDS": "1"},
            cwd=study["root"],
            wait=False,
            run_args=("--category=Echo",),
        )
        wait_for(half, whole)
    finally:
        for proxy in endpoints.proxies.values():
            proxy.delay = 0.0
    outputs = {"1/2": task_outputs(study, array_tasks(half))["1"], "1/1": task_outputs(study, array_tasks(whole))["1"]}
    echo = [name for name, (category, _) in BENCHMARKS.items() if category == "Echo"]
    samples = sum(len(BENCHMARKS[name][1]) for name in echo) * len(multipliers)
    sent = endpoints.total() - before
    logs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.eval"))
    assert len(logs) >= len(echo) * len(multipliers), (logs, outputs)
    assert sent == samples, f"{sent} requests for {samples} samples: cells were run twice at once\n{outputs}"
    assert len(logs) == len(echo) * len(multipliers), logs
    skips = [line for out in outputs.values() for line in out.splitlines() if "skip: " in line]
    assert skips, f"the runs did not overlap on a cell: nothing was skipped\n{outputs}"
    for line in skips:
        assert re.search(r"skip: Echo[AB] m=\S+ is being run by pid \d+ on \S+; re-run to pick it up", line), line
