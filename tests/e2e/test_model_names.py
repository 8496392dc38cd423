"""A served model named by a local path (vLLM's default): logs and CSV name its folder, requests carry the path."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner
from tests.helpers import toy_benchmarks, toy_responder, write_jsonl

from steerbench.cli import main
from steerbench.sim.simulator import SimulatedEndpoint

SERVED_AS = "/home/someone/models/SmolLM2-135M/"  # as `vllm serve /home/someone/models/SmolLM2-135M/` names it


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_path_named_model_gets_a_clean_name_in_logs_and_csv(tmp_path: Path):
    from inspect_ai.log import read_eval_log

    endpoints = [SimulatedEndpoint(m, toy_responder, model=SERVED_AS, keep_bodies=True).start() for m in (0.0, 1.0)]
    try:
        lines = [endpoint.deployment_line() for endpoint in endpoints]
        lines[0]["model"] = SERVED_AS  # named in the file; the other comes from GET /v1/models
        lines[1]["steering"] = {"model": SERVED_AS, "layer": 3, "vector_sha256": "ab" * 32, "normalized": False}
        deployments = write_jsonl(tmp_path / "deployments.jsonl", lines)
        common = [
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(toy_benchmarks(tmp_path / "benchmarks.jsonl")),
            "--log-root",
            str(tmp_path / "logs"),
        ]
        result = cli("run", "--all", *common)
        assert result.exit_code == 0, result.output
        assert cli("aggregate", *common, "--output", str(tmp_path / "data.csv")).exit_code == 0
    finally:
        for endpoint in endpoints:
            endpoint.stop()
    # the simulator answers 404 to any other model name: every request carried the served name
    for endpoint in endpoints:
        assert endpoint.stats.completions > 0
        assert {body["model"] for body in endpoint.stats.bodies} == {SERVED_AS}
    frame = pd.read_csv(tmp_path / "data.csv", dtype={"multiplier": str})
    assert set(frame["status"]) == {"success"}
    assert set(zip(frame["multiplier"], frame["model"])) == {
        ("0.0", "openai-api/steer_m0p0/SmolLM2-135M"),
        ("1.0", "openai-api/steer_m1p0/SmolLM2-135M"),
    }
    assert set(frame.loc[frame["multiplier"] == "1.0", "steering_model"]) == {"SmolLM2-135M"}
    logs = sorted((tmp_path / "logs").rglob("*.eval"))
    assert len(logs) == 4
    for log in logs:
        header = read_eval_log(str(log), header_only=True)
        assert header.eval.model.endswith("/SmolLM2-135M") and "//" not in header.eval.model
        assert "/home/" not in json.dumps(header.eval.metadata)  # the steering provenance
    assert "//" not in (tmp_path / "data.csv").read_text().replace("://", "")
    assert "/home/" not in (tmp_path / "data.csv").read_text()
