"""What live progress (issue 15) costs the orchestrator: CPU per sample with and without it.

One multiplier's job (bench/mc_task.py's multiple-choice task, N samples) is run in this
process, alternately with progress on (Inspect hooks counting samples, a layer on the HTTP
transport watching for failing requests, the cell's progress file rewritten at most once a
second) and off, against a simulated endpoint that answers at once in its own process. What is
measured is this process's CPU time (user + system) per sample: the budget is 0.5 ms.

    python bench/progress_cost.py [--samples 400] [--rounds 3]

It then measures the machinery alone, without Inspect: the work per sample, per request and
per progress-file write, which is precise where whole rounds are not.

Results on this project's 2-core machine: bench/README.md ("Live progress").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
MODEL = "simulated-steered-model"


def _serve(conn: Any) -> None:
    sys.path.insert(0, str(BENCH))
    from mc_task import responder

    from steerbench.sim.simulator import SimulatedEndpoint

    endpoint = SimulatedEndpoint(0.0, responder, model=MODEL).start()
    conn.send({"multiplier": "0.0", "url": endpoint.url, "key": endpoint.key, "model": MODEL})
    conn.recv()
    endpoint.stop()


def one_round(job: Any, folder: Path, progress: bool) -> float:
    """CPU seconds of one run of the job into a fresh log folder."""
    from steerbench.execution.run import run_endpoint_job

    job = replace(job, log_root=str(folder), progress=progress)
    started = time.process_time()
    outcomes = run_endpoint_job(job, report=lambda line: None)
    cpu = time.process_time() - started
    assert all(o.status == "success" for o in outcomes), outcomes
    return cpu


def machinery_alone(calls: int = 100_000) -> dict[str, float]:
    """Microseconds of CPU per call of what progress adds per sample and per request, measured
    without Inspect around it (precise where the end-to-end rounds are noisy)."""
    import asyncio
    from types import SimpleNamespace

    import httpx

    from steerbench.execution.progress import ProgressTracker, _watch_transport_class

    with tempfile.TemporaryDirectory(prefix="steerbench-bench-progress-") as work:
        tracker = ProgressTracker()
        tracker.open_folder(str(Path(work) / "Bench" / "multiplier_0.0"))
        spec = SimpleNamespace(
            dataset=SimpleNamespace(samples=calls, sample_ids=None),
            config=SimpleNamespace(limit=None, epochs=1, sample_id=None),
            metadata={"steerbench": {"benchmark": "MC", "subset": "", "category": "Bench", "multiplier": "0.0"}},
        )
        tracker.task_start("e", spec)
        started = time.process_time()
        for _ in range(calls):
            tracker.sample_end("e", None)
        per_sample = (time.process_time() - started) / calls * 1e6
        started = time.process_time()
        for _ in range(200):
            tracker._write(tracker.cells["e"], time.time())
        per_write = (time.process_time() - started) / 200 * 1e6
        tracker.close_folder()

    class Inner(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=b"{}", request=request)

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions", content=b"{}")
    watch = _watch_transport_class()(Inner(), ProgressTracker())

    async def many(transport: Any, n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            await transport.handle_async_request(request)
        return time.process_time() - started

    n = calls // 5
    bare = asyncio.run(many(Inner(), n))
    layered = asyncio.run(many(watch, n))
    return {"sample": per_sample, "file write": per_write, "request layer": (layered - bare) / n * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    os.environ.setdefault("INSPECT_LOG_LEVEL", "error")
    from steerbench.core.plan import RunOptions
    from steerbench.execution.run import build_jobs
    from steerbench.execution.study import load_plan

    context = mp.get_context("spawn")
    conn, child = context.Pipe()
    server = context.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    deployment = conn.recv()
    try:
        with tempfile.TemporaryDirectory(prefix="steerbench-bench-progress-") as work:
            root = Path(work)
            (root / "deployments.jsonl").write_text(json.dumps(deployment) + "\n")
            (root / "benchmarks.jsonl").write_text(
                json.dumps(
                    {
                        "name": "MC",
                        "eval_name": f"{BENCH / 'mc_task.py'}@mc",
                        "category": "Bench",
                        "task_args": {"samples": args.samples},
                    }
                )
                + "\n"
            )
            plan = load_plan(root / "deployments.jsonl", root / "benchmarks.jsonl", RunOptions(all=True))
            (job,) = build_jobs(plan, str(root / "logs"), {0.0: deployment["key"]}, {0.0: MODEL})
            one_round(job, root / "warm-up", True)  # imports, caches, first-eval costs
            cpu: dict[bool, list[float]] = {True: [], False: []}
            for i in range(args.rounds):
                for progress in (False, True) if i % 2 == 0 else (True, False):
                    cpu[progress].append(one_round(job, root / f"round-{i}-{progress}", progress))
    finally:
        conn.send("stop")
        server.join(10)

    per_sample = {p: [1000 * c / args.samples for c in values] for p, values in cpu.items()}
    off, on = statistics.median(per_sample[False]), statistics.median(per_sample[True])
    print(f"{args.samples} samples per round, {args.rounds} rounds each way, CPU of this process per sample:")
    print(f"  progress off: {off:.2f} ms/sample  (rounds: {', '.join(f'{v:.2f}' for v in per_sample[False])})")
    print(f"  progress on:  {on:.2f} ms/sample  (rounds: {', '.join(f'{v:.2f}' for v in per_sample[True])})")
    print(
        f"  cost of progress: {on - off:+.3f} ms/sample (budget 0.5; rounds differ by more than that on a busy machine)"
    )
    micro = machinery_alone()
    print("the machinery alone (no Inspect around it):")
    print(f"  per sample (hook work: counts, time check): {micro['sample']:.1f} µs")
    print(f"  per request (transport layer, no failure):  {micro['request layer']:.1f} µs")
    print(f"  per progress file write (at most 1/s per running cell): {micro['file write']:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
