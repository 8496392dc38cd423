"""serve's self-test: what it concludes from the plugin's proof file and a probe, against a loopback server.

The loopback server answers like vLLM's OpenAI API; whether a probe leaves a `steered` line is up to
each test (as the real plugin does when its hook runs). The real vLLM cases (plugin not loaded,
compiled one-server graphs) are in tests/vllm_lane/test_selftest.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from steerbench.serve.plugin import Proof, proof_path, runner_is_patched
from steerbench.serve.selftest import SteeringNotActive, prove_steering

KEY = "sb-test-key"
V1_RUNNER = "vllm.v1.worker.cpu_model_runner.CPUModelRunner"
V2_RUNNER = "vllm.v1.worker.gpu.model_runner.GPUModelRunner"
PER_REQUEST = {"mode": "per_request", "multiplier": None}


class FakeVllm:
    """A loopback OpenAI-style server; `steers` decides whether a probe writes the plugin's `steered` line."""

    def __init__(self, proof: Path, steers: bool) -> None:
        self.proof, self.steers, self.bodies = proof, steers, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200 if self.headers.get("Authorization") == f"Bearer {KEY}" else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply({"data": [{"id": "tiny"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                if fake.steers:
                    proof = Proof(fake.proof)
                    proof.record("steered", layer=1)
                self._reply({"choices": [{"text": "ok"}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    return tmp_path / "steering-18000.json"


def fake(settings_path: Path, steers: bool) -> Iterator[FakeVllm]:
    server = FakeVllm(proof_path(settings_path), steers)
    try:
        yield server
    finally:
        server.server.shutdown()


def installed(settings_path: Path, runner: str = V1_RUNNER) -> None:
    Proof(proof_path(settings_path)).record(
        "installed", runner=runner, runner_patched=runner_is_patched(runner), vllm="0.32.0", mode="per_request"
    )


def test_a_server_whose_probe_runs_the_hook_passes(settings_path: Path) -> None:
    installed(settings_path)
    for server in fake(settings_path, steers=True):
        prove_steering(server.url, KEY, PER_REQUEST, settings_path)
        assert server.bodies[0]["vllm_xargs"] == {"steer_multiplier": 1.0}
        assert server.bodies[0]["model"] == "tiny" and server.bodies[0]["temperature"] == 0.0


def test_a_probe_that_never_reaches_the_hook_is_refused(settings_path: Path) -> None:
    installed(settings_path)
    for server in fake(settings_path, steers=False):
        with pytest.raises(SteeringNotActive, match="ran without the steering hook.*steerbench serve --eager"):
            prove_steering(server.url, KEY, PER_REQUEST, settings_path, settle_seconds=0.5)


def test_a_plugin_that_never_loaded_is_refused_naming_vllm_plugins(
    settings_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_PLUGINS", "lora_filesystem_resolver")
    for server in fake(settings_path, steers=True):
        with pytest.raises(SteeringNotActive, match="VLLM_PLUGINS='lora_filesystem_resolver'"):
            prove_steering(server.url, KEY, PER_REQUEST, settings_path)
        assert server.bodies == []  # refused before any probe


def test_the_v2_runner_is_refused_by_name(settings_path: Path) -> None:
    installed(settings_path, runner=V2_RUNNER)
    for server in fake(settings_path, steers=True):
        with pytest.raises(SteeringNotActive, match="vllm.v1.worker.gpu.model_runner.GPUModelRunner"):
            prove_steering(server.url, KEY, PER_REQUEST, settings_path)


def test_a_fixed_server_at_zero_needs_no_probe(settings_path: Path) -> None:
    installed(settings_path)
    for server in fake(settings_path, steers=False):
        prove_steering(server.url, KEY, {"mode": "fixed", "multiplier": 0.0}, settings_path)
        assert server.bodies == []


def test_runner_names() -> None:
    assert runner_is_patched("vllm.v1.worker.gpu_model_runner.GPUModelRunner")
    assert runner_is_patched(V1_RUNNER)
    assert not runner_is_patched(V2_RUNNER)
    assert not runner_is_patched("unknown")
