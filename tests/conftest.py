from __future__ import annotations

from pathlib import Path

import pytest

from steerbench.sim.simulator import SimulatedFleet
from tests.helpers import toy_benchmarks, toy_responder

MULTIPLIERS = [-1.0, -0.5, 0.0, 0.5, 1.0]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never reach a real provider, and keep Inspect's state out of the home folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSPECT_LOG_LEVEL", "error")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def fleet():
    """Five simulated endpoints on loopback, each with its own random key."""
    with SimulatedFleet(MULTIPLIERS, toy_responder) as running:
        yield running


@pytest.fixture
def study(tmp_path: Path, fleet: SimulatedFleet) -> dict[str, Path]:
    """deployments.jsonl pointing at the fleet and a benchmarks.jsonl of the toy tasks."""
    deployments = tmp_path / "deployments.jsonl"
    fleet.write_deployments(deployments)
    benchmarks = toy_benchmarks(tmp_path / "benchmarks.jsonl")
    return {"deployments": deployments, "benchmarks": benchmarks, "logs": tmp_path / "logs", "root": tmp_path}
