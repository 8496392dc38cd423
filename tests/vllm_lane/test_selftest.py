"""A vLLM server that would answer unsteered is refused at start-up: no `ready:`, no deployments, no process left.

- VLLM_PLUGINS names another plugin only, so vLLM never loads steerbench's (this printed `ready:`
  before the self-test existed);
- the hook is installed but never changes the stream (stubbed here through a sitecustomize that
  every vLLM process imports): what a compiled graph that froze the per-token multipliers did
  before they moved into persistent buffers (`-- --no-enforce-eager` then printed `ready:` too).
The positive case (ready only after the probe proved the hook ran) is every other test of the lane,
eager and `--compiled`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LAYER, SERVE_ARGS

TIMEOUT = 900


def serve_until_exit(
    folder: Path, model: Path, vector: Path, port: int, env: dict[str, str], vllm_args: list[str]
) -> tuple[int, str]:
    folder.mkdir(parents=True, exist_ok=True)
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
        "0,1",
        "--one-server",
        "--port",
        str(port),
        "--out",
        str(folder / "deployments.jsonl"),
        "--log-dir",
        str(folder / "serve_logs"),
        *SERVE_ARGS,
        *vllm_args,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT, cwd=folder, env={**os.environ, **env}
    )
    left = processes_started_for(folder)
    assert left == [], f"processes left behind: {left}"
    return result.returncode, result.stdout + result.stderr


def processes_started_for(folder: Path) -> list[int]:
    """Live processes whose environment names this folder (every vLLM process serve starts carries
    STEERBENCH_STEERING=<folder>/serve_logs/...), orphans included."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and str(folder).encode() in environ:
            found.append(int(entry.name))
    return found


def assert_refused_cleanly(folder: Path, code: int, output: str, port: int, reason: str) -> None:
    assert code == 1, output
    assert "does not steer" in output and reason in output, output
    assert "ready:" not in output, output
    assert not (folder / "deployments.jsonl").exists()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of the probe's connection is fine
        probe.bind(("127.0.0.1", port))  # no listener is left on the port


@pytest.mark.vllm
def test_a_vllm_that_never_loads_the_plugin_is_refused(lane_dir: Path, tiny_model: Path, vector_file: Path) -> None:
    folder = lane_dir / "selftest_plugins"
    code, output = serve_until_exit(folder, tiny_model, vector_file, 18140, {"VLLM_PLUGINS": "some_other_plugin"}, [])
    assert_refused_cleanly(folder, code, output, 18140, "VLLM_PLUGINS='some_other_plugin'")


NO_OP_HOOK = """
import steerbench.serve.plugin as plugin

plugin._table_hook = lambda vector, operation, table: (lambda module, args, output: output)
"""


@pytest.mark.vllm
def test_a_hook_that_never_steers_is_refused(lane_dir: Path, tiny_model: Path, vector_file: Path) -> None:
    folder = lane_dir / "selftest_no_op_hook"
    stub = folder / "stub"
    stub.mkdir(parents=True)
    (stub / "sitecustomize.py").write_text(NO_OP_HOOK)
    path = os.pathsep.join(part for part in (str(stub), os.environ.get("PYTHONPATH", "")) if part)
    code, output = serve_until_exit(folder, tiny_model, vector_file, 18150, {"PYTHONPATH": path}, [])
    assert_refused_cleanly(folder, code, output, 18150, "ran without the steering hook")
    assert "eager" in output  # how the server ran (the default), named in the refusal
