"""Putting every dataset benchmarks.jsonl needs into the local caches, once (`steerbench prefetch`).

A study starts one eval per (benchmark, multiplier); each loads its dataset when its task
is created, and parallel loads from the Hugging Face Hub run into its rate limits (which
inspect_evals answers with back-offs of minutes). After a prefetch, runs can set
`HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1` and never ask the Hub again.

A dataset is whatever creating the benchmark's task loads: Hugging Face datasets go to
the `datasets` cache, other files (GPQA's CSV, Sycophancy's JSONL) to inspect_evals'
cache. So each task is created once, with the arguments a run would give it:

1. Check: every task is created with the Hub switched off and any other network access
   refused, and retries off. What loads is "cached". This runs in a child process,
   because `datasets` reads the offline switches once, at import; when this process is
   already offline (the switches are set), it runs here.
2. Download: unless offline, each task that failed the check is created again normally
   ("downloaded" or "failed"); the downloads are checked offline once more, so
   "downloaded" means a later offline run will find them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

from ..core.cells import cell_label
from ..core.config import Benchmark, load_benchmarks
from ..core.plan import task_args
from ..logs.errors import first_line
from .preflight import OFFLINE_SWITCHES, is_offline, missing_dependency

DATASET_STATES = ("cached", "downloaded", "failed")
PLACEHOLDER_GRADER = "mockllm/model"


@dataclass(frozen=True)
class DatasetStatus:
    """What prefetch found for one benchmark (subset): its datasets are cached,
    were downloaded now, or could not be had (detail says why)."""

    label: str  # benchmark, or benchmark[subset]
    eval_name: str
    state: str  # one of DATASET_STATES
    detail: str = ""


@dataclass(frozen=True)
class TaskToLoad:
    label: str
    eval_name: str
    task_args: dict[str, Any]


def tasks_to_load(benchmarks: list[Benchmark]) -> list[TaskToLoad]:
    """Each benchmark subset with the task arguments that decide what it loads
    (its own arguments and the few-shot count; graders and sandboxes load nothing)."""
    from ..tasks.resolve import resolve_benchmarks

    signatures = resolve_benchmarks(benchmarks)  # unknown tasks or arguments: ConfigError, as for `run`
    loads = []
    for bench in benchmarks:
        sig = signatures[bench.name]
        for subset in bench.subsets:
            args = task_args(bench, subset.task_args, sig, sandbox=None)  # as the plan creates it
            if sig.grader_param:
                # a task creates its grader model along with it (Sycophancy's defaults to the
                # evaluated one, which prefetch has not got); Inspect's mock model needs no key
                args[sig.grader_param] = PLACEHOLDER_GRADER
            loads.append(TaskToLoad(cell_label(bench.name, subset.name), bench.eval_name, args))
    return loads


# ---------------------------------------------------------------- creating tasks


def _error_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(str(error))}"[:300]


def create_task(load: TaskToLoad) -> str | None:
    """Create the task (which loads its datasets); None if it worked, else why not."""
    from ..boundary.tasks import load_task_spec

    problem = missing_dependency(load.eval_name)
    if problem:
        return problem
    # tasks print "Loading dataset ..." on stdout, which is this command's report
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            load_task_spec(load.eval_name, dict(load.task_args))
        except Exception as error:
            return _error_line(error)
    return None


# ---------------------------------------------------------------- the offline check


class NetworkRefused(RuntimeError):
    """Raised for any network access while the caches are checked. Not an OSError, so
    that no downloader takes it for a transient failure worth retrying."""


_refused: list[str] | None = None  # hosts asked for while refusing; None: not refusing
_hook_installed = False


def _refuse_network(event: str, args: tuple[Any, ...]) -> None:
    if _refused is None:
        return
    if event == "socket.getaddrinfo" or (event == "socket.connect" and isinstance(args[1], tuple)):
        target = str(args[0] if event == "socket.getaddrinfo" else args[1][0])
        _refused.append(target)
        raise NetworkRefused(f"network access refused while checking the local cache ({target})")


@contextlib.contextmanager
def refusing_network() -> Iterator[list[str]]:
    """While active, name lookups and IP connections from this process fail at once (an
    audit hook sees every socket, whatever library opens it); yields the hosts asked for."""
    global _refused, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_refuse_network)  # cannot be removed: it does nothing outside this block
        _hook_installed = True
    _refused = refused = list[str]()
    try:
        yield refused
    finally:
        _refused = None


def _quiet_datasets() -> None:
    # offline, `datasets` warns for every load that it uses the cached copy
    import datasets

    datasets.logging.set_verbosity_error()


def _not_cached(problem: str, hosts: list[str]) -> str:
    if hosts:
        needs = f"not in the local cache (loading it needs {', '.join(sorted(set(hosts)))})"
        return needs if problem.startswith(NetworkRefused.__name__) else f"{needs}: {problem}"
    if "OfflineModeIsEnabled" in problem or "Couldn't find cache" in problem:
        return f"not in the local cache: {problem}"
    return problem


def check_cached(loads: list[TaskToLoad], trust_gpqa_sha256: str | None = None) -> list[DatasetStatus]:
    """Create every task from the local caches only. This process must be offline
    (`datasets` and `huggingface_hub` read the switches at import). trust_gpqa_sha256: the
    synthetic GPQA CSV's checksum, trusted (demo, tests)."""
    from ..boundary.offline import disable_dataset_retries, trust_gpqa_csv

    # offline a retry cannot help: inspect_evals would back off for minutes before failing
    disable_dataset_retries()
    if trust_gpqa_sha256:
        trust_gpqa_csv(trust_gpqa_sha256)
    _quiet_datasets()
    statuses = []
    for load in loads:
        with refusing_network() as hosts:
            problem = create_task(load)
        if problem is None:
            statuses.append(DatasetStatus(load.label, load.eval_name, "cached"))
        else:
            statuses.append(DatasetStatus(load.label, load.eval_name, "failed", _not_cached(problem, hosts)))
    return statuses


def check_in_child(loads: list[TaskToLoad], trust_gpqa_sha256: str | None = None) -> list[DatasetStatus]:
    """check_cached in a fresh process with the offline switches set."""
    with tempfile.TemporaryDirectory(prefix="steerbench-prefetch-") as folder:
        request, answer = Path(folder) / "loads.json", Path(folder) / "statuses.json"
        request.write_text(
            json.dumps({"loads": [asdict(load) for load in loads], "trust_gpqa_sha256": trust_gpqa_sha256})
        )
        env = {**os.environ, **dict.fromkeys(OFFLINE_SWITCHES, "1")}
        proc = subprocess.run(
            [sys.executable, "-m", "steerbench.execution.prefetch", str(request), str(answer)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not answer.exists():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return [
                DatasetStatus(load.label, load.eval_name, "failed", f"cache check crashed: {tail}") for load in loads
            ]
        return [DatasetStatus(**status) for status in json.loads(answer.read_text())]


# ---------------------------------------------------------------- prefetch


def prefetch(
    benchmarks_path: str | Path, say: Callable[[str], None] = lambda line: None, trust_gpqa_sha256: str | None = None
) -> list[DatasetStatus]:
    """Cached / downloaded / failed, per benchmark (subset) of benchmarks.jsonl, in its order.
    `say` hears what is being done (the slow parts), one line at a time. trust_gpqa_sha256:
    the synthetic GPQA CSV's checksum, trusted (demo, tests)."""
    loads = tasks_to_load(load_benchmarks(benchmarks_path))
    if is_offline():
        say(f"checking the local caches for {len(loads)} task(s) (offline: nothing is downloaded)")
        return check_cached(loads, trust_gpqa_sha256)
    say(f"checking the local caches for {len(loads)} task(s)")
    statuses = {s.label: s for s in check_in_child(loads, trust_gpqa_sha256)}
    downloaded = []
    for load in loads:
        if statuses[load.label].state == "cached":
            continue
        say(f"downloading what {load.label} ({load.eval_name}) needs")
        problem = create_task(load)  # online: loading downloads
        statuses[load.label] = DatasetStatus(
            load.label, load.eval_name, "failed" if problem else "downloaded", problem or ""
        )
        if not problem:
            downloaded.append(load)
    if downloaded:
        say(f"checking that the {len(downloaded)} download(s) load offline")
        for status in check_in_child(downloaded, trust_gpqa_sha256):
            if status.state != "cached":
                statuses[status.label] = DatasetStatus(
                    status.label,
                    status.eval_name,
                    "failed",
                    f"downloaded, but an offline run still cannot load it: {status.detail}",
                )
    return [statuses[load.label] for load in loads]


def summary(statuses: list[DatasetStatus]) -> str:
    counts = {state: sum(1 for s in statuses if s.state == state) for state in DATASET_STATES}
    return ", ".join(f"{counts[state]} {state}" for state in DATASET_STATES)


def _child_main(request: str, answer: str) -> None:
    asked = json.loads(Path(request).read_text())
    loads = [TaskToLoad(**load) for load in asked["loads"]]
    statuses = check_cached(loads, asked["trust_gpqa_sha256"])
    Path(answer).write_text(json.dumps([asdict(status) for status in statuses]))


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
