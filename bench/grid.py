"""Benchmark the orchestrator: the same grid run three ways against simulated endpoints.

    python bench/grid.py                       # 7 endpoints x 3 tasks x 300 samples
    python bench/grid.py --samples 100 --ways c

(a) the original study's way: one `inspect eval` subprocess per benchmark with default
    settings, one shell loop per multiplier, all loops in parallel;
(b) one plain `eval_set` over every (task, endpoint) in one process, default settings;
(c) `steerbench run --all`.

The endpoints run in their own process on 127.0.0.1 (latency, and a cap on requests served
at once, like a GPU server's batch limit). Each way runs as a child process, so its CPU
time (children included) and peak memory (its process tree) are its own. After each way
the bench reads every log in full and checks that no sample was lost and every score is
exactly the one the simulated model's rule gives; it exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TASK_FILE = BENCH / "mc_task.py"
VENV_BIN = Path(sys.executable).parent
MODEL = "simulated-steered-model"
WAYS = {
    "a": "(a) inspect eval loops",
    "b": "(b) one eval_set",
    "c": "(c) steerbench run",
}


@dataclass(frozen=True)
class Grid:
    endpoints: int
    tasks: int
    samples: int
    latency: float
    concurrency: int
    categories: int

    @property
    def multipliers(self) -> list[str]:
        """Labels as a study would write them: -1.5, -1.0, ..., 1.5 for 7 endpoints."""
        mid = (self.endpoints - 1) / 2
        return [repr((i - mid) * 0.5) for i in range(self.endpoints)]

    @property
    def task_names(self) -> list[str]:
        return [f"mc_{i + 1}" for i in range(self.tasks)]

    def category(self, task_index: int) -> str:
        return f"cat{task_index % self.categories + 1}"

    @property
    def total_samples(self) -> int:
        return self.endpoints * self.tasks * self.samples


@dataclass
class Measurement:
    way: str
    wall: float
    cpu: float
    peak_rss_mb: float
    simulator_cpu: float
    others_cpu: float  # CPU used meanwhile by processes outside the bench: it slows the run
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- simulated endpoints (own process)


def _serve(conn: Any, multipliers: list[str], latency: float, concurrency: int) -> None:
    sys.path.insert(0, str(BENCH))
    from mc_task import responder

    from steerbench.sim.simulator import SimulatedEndpoint

    endpoints = [
        SimulatedEndpoint(float(m), responder, model=MODEL, latency=latency, max_concurrency=concurrency).start()
        for m in multipliers
    ]
    conn.send([{"multiplier": m, "url": e.url, "key": e.key, "model": MODEL} for m, e in zip(multipliers, endpoints)])
    while True:
        command = conn.recv()
        if command == "stats":
            conn.send(
                [
                    {
                        "completions": e.stats.completions,
                        "requests": e.stats.requests,
                        "peak_in_flight": e.stats.peak_in_flight,
                    }
                    for e in endpoints
                ]
            )
            for e in endpoints:
                e.stats.completions = e.stats.requests = e.stats.peak_in_flight = 0
        else:
            for e in endpoints:
                e.stop()
            return


class Fleet:
    def __init__(self, grid: Grid):
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, grid.multipliers, grid.latency, grid.concurrency), daemon=True
        )
        self.process.start()
        self.deployments: list[dict[str, str]] = self._conn.recv()

    def stats(self) -> list[dict[str, int]]:
        self._conn.send("stats")
        return self._conn.recv()

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self._conn.send("stop")
        self.process.join(10)


# ---------------------------------------------------------------- measuring a child process


class PeakMemory:
    """Samples the memory of a process tree until stopped: the sum of its processes'
    proportional set sizes (PSS), so pages that forked workers share count once."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        total += process.memory_full_info().pss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def measure(command: list[str], env: dict[str, str], output: Path) -> tuple[float, float, float, int]:
    """Run a command to completion: (wall s, CPU s of it and its children, peak MB, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(output, "w") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        memory = PeakMemory(child.pid)
        code = child.wait()
    wall = time.perf_counter() - started
    peak = memory.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak, code


def machine_cpu_seconds() -> float:
    """CPU time used by every process on the machine so far (all cores)."""
    import psutil

    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


# ---------------------------------------------------------------- the three ways


def provider(label: str) -> str:
    from steerbench.core.config import parse_multiplier

    return parse_multiplier(label, "bench", None).provider


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env


def way_a_command(grid: Grid, fleet: Fleet, logs: Path) -> tuple[list[str], dict[str, str]]:
    """One shell loop per multiplier, in parallel; each loop runs `inspect eval` per benchmark."""
    env = base_env()
    loops = []
    for dep in fleet.deployments:
        service = provider(dep["multiplier"])
        env[f"{service.upper()}_API_KEY"] = dep["key"]
        runs = []
        for i, name in enumerate(grid.task_names):
            log_dir = logs / grid.category(i) / f"multiplier_{dep['multiplier']}"
            runs.append(
                f"inspect eval {TASK_FILE}@mc -T samples={grid.samples} -T name={name} "
                f"--model openai-api/{service}/{MODEL} --model-base-url {dep['url']} "
                f"--max-connections {grid.concurrency} --log-dir {log_dir}"
            )
        loops.append("(" + "; ".join(runs) + ") &")
    script = "\n".join(loops) + "\nwait\n"
    return ["bash", "-c", script], env


def run_way_b(spec_file: str) -> None:
    """Child process of way (b): one plain eval_set over every task and endpoint."""
    spec = json.loads(Path(spec_file).read_text())
    sys.path.insert(0, str(BENCH))
    from inspect_ai import eval_set
    from inspect_ai.model import GenerateConfig, get_model
    from mc_task import mc

    models = [
        get_model(
            f"openai-api/{provider(d['multiplier'])}/{MODEL}",
            base_url=d["url"],
            api_key=d["key"],
            config=GenerateConfig(max_connections=spec["concurrency"]),
        )
        for d in spec["deployments"]
    ]
    tasks = [mc(samples=spec["samples"], name=name) for name in spec["tasks"]]
    success, _ = eval_set(tasks, log_dir=spec["log_dir"], model=models)
    sys.exit(0 if success else 1)


def way_b_command(grid: Grid, fleet: Fleet, logs: Path, work: Path) -> tuple[list[str], dict[str, str]]:
    spec = work / "way_b.json"
    spec.write_text(
        json.dumps(
            {
                "deployments": fleet.deployments,
                "samples": grid.samples,
                "tasks": grid.task_names,
                "concurrency": grid.concurrency,
                "log_dir": str(logs),
            }
        )
    )
    return [sys.executable, str(Path(__file__).resolve()), "--way-b-child", str(spec)], base_env()


def way_c_command(
    grid: Grid, fleet: Fleet, logs: Path, work: Path, workers: int | None, steerbench: list[str]
) -> tuple[list[str], dict[str, str]]:
    deployments = work / "deployments.jsonl"
    deployments.write_text("".join(json.dumps(d) + "\n" for d in fleet.deployments))
    benchmarks = work / "benchmarks.jsonl"
    benchmarks.write_text(
        "".join(
            json.dumps(
                {
                    "name": name,
                    "eval_name": f"{TASK_FILE}@mc",
                    "category": grid.category(i),
                    "task_args": {"samples": grid.samples, "name": name},
                }
            )
            + "\n"
            for i, name in enumerate(grid.task_names)
        )
    )
    command = [
        *steerbench,
        "run",
        "--all",
        "--deployments",
        str(deployments),
        "--benchmarks",
        str(benchmarks),
        "--log-root",
        str(logs),
        "--max-connections",
        str(grid.concurrency),
    ]
    if workers:
        command += ["--workers", str(workers)]
    return command, base_env()


# ---------------------------------------------------------------- checking the results


def check_logs(
    grid: Grid, logs: Path, fleet_stats: list[dict[str, int]], deployments: list[dict[str, str]]
) -> list[str]:
    """Every (task, multiplier) has one successful log with every sample, each scored exactly."""
    sys.path.insert(0, str(BENCH))
    from inspect_ai.log import list_eval_logs, read_eval_log
    from mc_task import answers_right, expected_accuracy

    by_provider = {provider(d["multiplier"]): d["multiplier"] for d in deployments}
    problems: list[str] = []
    found: dict[tuple[str, str], int] = {}
    for info in list_eval_logs(str(logs), recursive=True):
        log = read_eval_log(info)
        if log.status != "success":
            continue
        label = by_provider.get(log.eval.model.split("/")[1]) if log.eval.model.count("/") >= 2 else None
        key = (log.eval.task.split("/")[-1], str(label))
        found[key] = found.get(key, 0) + 1
        samples = log.samples or []
        ids = sorted(int(s.id) for s in samples)
        if ids != list(range(1, grid.samples + 1)):
            problems.append(f"{key}: {len(samples)} samples in the log, expected ids 1..{grid.samples}")
        for sample in samples:
            score = next(iter((sample.scores or {}).values()), None)
            want = "C" if answers_right(float(label), int(sample.id)) else "I"
            if score is None or score.value != want:
                problems.append(f"{key}: sample {sample.id} scored {score.value if score else None}, expected {want}")
                break
        accuracy = log.results.scores[0].metrics["accuracy"].value if log.results and log.results.scores else None
        expected = expected_accuracy(float(label), grid.samples)
        if accuracy is None or abs(accuracy - expected) > 1e-12:
            problems.append(f"{key}: accuracy {accuracy}, expected exactly {expected}")
    for name in grid.task_names:
        for label in grid.multipliers:
            count = found.get((name, label), 0)
            if count != 1:
                problems.append(f"({name}, {label}): {count} successful logs, expected 1")
    for dep, stats in zip(deployments, fleet_stats):
        if stats["peak_in_flight"] > grid.concurrency:
            problems.append(
                f"multiplier {dep['multiplier']}: {stats['peak_in_flight']} requests at once, "
                f"above --max-connections {grid.concurrency}"
            )
        if stats["completions"] < grid.tasks * grid.samples:
            problems.append(
                f"multiplier {dep['multiplier']}: answered {stats['completions']} requests, "
                f"fewer than {grid.tasks * grid.samples} samples"
            )
    return problems


# ---------------------------------------------------------------- report


def bounds(grid: Grid, cpu: float) -> tuple[float, float]:
    """(endpoint bound, CPU bound) in seconds. Endpoints serve in parallel; so do the cores."""
    endpoint = grid.tasks * grid.samples * grid.latency / grid.concurrency
    cores = os.cpu_count() or 1
    return endpoint, cpu / cores


def report(grid: Grid, results: dict[str, Measurement], command: str) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"grid: {grid.endpoints} endpoints x {grid.tasks} tasks x {grid.samples} samples = {grid.total_samples} samples, "
        f"{grid.latency * 1000:.0f} ms latency, {grid.concurrency} concurrent per endpoint, {cores} cores",
        f"command: {command}",
        "",
        "| way | wall s | CPU s | CPU ms/sample | peak MB | simulator CPU s | others' CPU s | endpoint bound s | CPU bound s | wall / max bound | checks |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for way, m in results.items():
        endpoint, cpu_bound = bounds(grid, m.cpu)
        lines.append(
            f"| {WAYS[way]} | {m.wall:.1f} | {m.cpu:.1f} | {1000 * m.cpu / grid.total_samples:.1f} | {m.peak_rss_mb:.0f} "
            f"| {m.simulator_cpu:.1f} | {m.others_cpu:.1f} | {endpoint:.1f} | {cpu_bound:.1f} | {m.wall / max(endpoint, cpu_bound):.2f} "
            f"| {'ok' if not m.problems else f'{len(m.problems)} FAILED'} |"
        )
    ratios = [
        f"(c)/({other}) wall: {results['c'].wall / results[other].wall:.2f}"
        for other in ("a", "b")
        if "c" in results and other in results
    ]
    if ratios:
        lines += ["", *ratios]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--samples", type=int, default=150, help="samples per task")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per request at the endpoint")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests per endpoint: served at once and --max-connections"
    )
    parser.add_argument("--categories", type=int, default=1, help="log folders per multiplier (tasks spread over them)")
    parser.add_argument("--ways", default="abc", help="which ways to run, e.g. 'ac'")
    parser.add_argument("--workers", type=int, default=None, help="--workers for (c) (default: steerbench's)")
    parser.add_argument("--steerbench", default=None, help="command that runs steerbench in (c), for experiments")
    parser.add_argument("--work", default=None, help="folder for logs (default: a temporary folder, removed)")
    parser.add_argument("--way-b-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.way_b_child:
        run_way_b(args.way_b_child)
        return 0
    grid = Grid(
        args.endpoints,
        args.tasks,
        args.samples,
        args.latency,
        args.concurrency,
        max(1, min(args.categories, args.tasks)),
    )
    work = Path(args.work or tempfile.mkdtemp(prefix="steerbench-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(grid)
    results: dict[str, Measurement] = {}
    try:
        for way in args.ways:
            logs = work / f"logs_{way}"
            shutil.rmtree(logs, ignore_errors=True)
            if way == "a":
                command, env = way_a_command(grid, fleet, logs)
            elif way == "b":
                command, env = way_b_command(grid, fleet, logs, work)
            else:
                command, env = way_c_command(
                    grid,
                    fleet,
                    logs,
                    work,
                    args.workers,
                    args.steerbench.split() if args.steerbench else [str(VENV_BIN / "steerbench")],
                )
            fleet.stats()  # reset counters
            simulator_before, machine_before = fleet.cpu_seconds(), machine_cpu_seconds()
            print(f"running {WAYS[way]} ...", flush=True)
            wall, cpu, peak, code = measure(command, env, work / f"output_{way}.txt")
            simulator_cpu = fleet.cpu_seconds() - simulator_before
            others_cpu = max(0.0, machine_cpu_seconds() - machine_before - cpu - simulator_cpu)
            problems = [] if code == 0 else [f"exit code {code} (see {work / f'output_{way}.txt'})"]
            problems += check_logs(grid, logs, fleet.stats(), fleet.deployments)
            results[way] = Measurement(way, wall, cpu, peak, simulator_cpu, others_cpu, problems)
            print(f"  {wall:.1f} s wall, {cpu:.1f} s CPU, {'ok' if not problems else 'FAILED'}", flush=True)
            for problem in problems[:10]:
                print(f"  problem: {problem}", flush=True)
    finally:
        fleet.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(grid, results, "python bench/grid.py " + " ".join(argv if argv is not None else sys.argv[1:])))
    return 1 if any(m.problems for m in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
