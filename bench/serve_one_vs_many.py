"""One vLLM server for N multipliers against N servers: peak memory and wall time, side by side, one run.

Needs the CPU vLLM environment (scripts/setup_vllm_cpu.sh VENV), then:

    VENV/bin/python bench/serve_one_vs_many.py [--samples 40] [--work /tmp/serve-bench]

Both ways serve the tiny test model (steerbench.sim.tiny_model) steered at -1, 0, 1, and run the same
grid with `steerbench run --all` (steerbench.sim.tiny_grid, greedy, 16 tokens). Memory is the summed PSS of
every process of the servers (API server, engine core, workers), sampled every 0.5 s; wall time
is start-up and the grid separately.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from steerbench.serve.launcher import descendants
from steerbench.sim.tiny_grid import write_benchmarks
from steerbench.sim.tiny_model import build_tiny_model

MULTIPLIERS = "-1,0,1"
VLLM_ARGS = [
    "--served-model-name",
    "tiny",
    "--",
    "--dtype",
    "float32",
    "--kv-cache-memory-bytes",
    "128M",
    "--max-model-len",
    "512",
]


def pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class PeakMemory(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.stopped = root, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            self.peak = max(self.peak, pss_bytes(descendants(self.root)))


def one_way(name: str, work: Path, model: Path, vector: Path, benchmarks: Path, samples: int, extra: list[str]) -> dict:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "serve.out"
    started = time.monotonic()
    with open(out, "w") as sink:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "steerbench.cli",
                "serve",
                "--model",
                str(model),
                "--vector",
                str(vector),
                "--layer",
                "1",
                "--multipliers",
                MULTIPLIERS,
                "--port",
                "18300" if not extra else "18310",
                "--out",
                str(folder / "deployments.jsonl"),
                "--log-dir",
                str(folder / "serve_logs"),
                *extra,
                *VLLM_ARGS,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    memory = PeakMemory(serve.pid)
    memory.start()
    try:
        while not any(line.startswith("ready:") for line in out.read_text().splitlines()):
            if serve.poll() is not None:
                raise SystemExit(f"{name}: steerbench serve exited:\n{out.read_text()}")
            time.sleep(0.5)
        ready = time.monotonic() - started
        grid_start = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "steerbench.cli",
                "run",
                "--all",
                "--deployments",
                str(folder / "deployments.jsonl"),
                "--benchmarks",
                str(benchmarks),
                "--log-root",
                str(folder / "logs"),
                "--max-tokens",
                "16",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        grid = time.monotonic() - grid_start
        if run.returncode != 0:
            raise SystemExit(f"{name}: run failed:\n{run.stdout}\n{run.stderr}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "steerbench.cli",
                "aggregate",
                "--deployments",
                str(folder / "deployments.jsonl"),
                "--benchmarks",
                str(benchmarks),
                "--log-root",
                str(folder / "logs"),
                "--output",
                str(folder / "data.csv"),
            ],
            cwd=folder,
            capture_output=True,
            check=True,
        )
    finally:
        memory.stopped.set()
        serve.terminate()
        serve.wait(timeout=120)
    import pandas as pd

    scores = pd.read_csv(folder / "data.csv").set_index("multiplier")["accuracy"].sort_index().to_dict()
    return {"name": name, "ready_s": ready, "grid_s": grid, "peak_gb": memory.peak / 2**30, "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path("/tmp/serve-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(args.work / "tiny")
    vector = args.work / "vector.npy"
    np.save(vector, (np.random.default_rng(1).normal(size=64) * 3).astype("float32"))
    benchmarks = write_benchmarks(args.work / "benchmarks.jsonl", args.samples)
    many = one_way("n_servers", args.work, model, vector, benchmarks, args.samples, [])
    one = one_way("one_server", args.work, model, vector, benchmarks, args.samples, ["--one-server"])
    print(f"{'way':<12} {'peak memory GB':>15} {'start-up s':>11} {'grid s':>8}  accuracy by multiplier")
    for row in (many, one):
        print(
            f"{row['name']:<12} {row['peak_gb']:>15.2f} {row['ready_s']:>11.1f} {row['grid_s']:>8.1f}  {row['scores']}"
        )
    print(f"memory one/N = {one['peak_gb'] / many['peak_gb']:.2f} (target <= 0.5)")
    print(
        f"grid wall one/N = {one['grid_s'] / many['grid_s']:.2f} (target <= 1.0); "
        f"start-up + grid one/N = {(one['ready_s'] + one['grid_s']) / (many['ready_s'] + many['grid_s']):.2f}"
    )
    print("same scores per multiplier:", one["scores"] == many["scores"])


if __name__ == "__main__":
    main()
