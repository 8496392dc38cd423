"""Steering norms from `steerbench serve --scale residual` travel through `run` into the aggregate CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tests.helpers import toy_benchmarks, toy_responder, write_jsonl

from steerbench.cli import main
from steerbench.serve.plan import ServeOptions, deployment_lines, parse_multipliers
from steerbench.serve.session import ServeRequest, build_plan
from steerbench.serve.vectors import write_safetensors
from steerbench.sim.simulator import SimulatedEndpoint


def test_aggregate_has_the_steering_norm_columns(tmp_path: Path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4}))
    vector = tmp_path / "v.safetensors"
    write_safetensors(vector, {"layer.2": np.arange(8, dtype=np.float32)}, {"residual_norms": json.dumps({"2": 25.0})})
    options = ServeOptions(model=str(model), multipliers=parse_multipliers("0,0.5,1"), one_server=True)
    plan, _ = build_plan(
        ServeRequest(options, vector, None, False, tmp_path / "d.jsonl", tmp_path, True, scale="residual")
    )
    steering = {float(line["multiplier"]): line["steering"] for line in deployment_lines(plan, None)}

    server = SimulatedEndpoint(0.0, toy_responder, per_request=True).start()
    try:
        lines = [
            {**line, "steering": steering[float(line["multiplier"])]}
            for line in server.shared_deployment_lines([0.0, 0.5, 1.0])
        ]
        deployments = write_jsonl(tmp_path / "deployments.jsonl", lines)
        benchmarks = toy_benchmarks(tmp_path / "benchmarks.jsonl")
        benchmarks.write_text(benchmarks.read_text().splitlines()[0] + "\n")  # Arithmetic alone
        common = [
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
            "--log-root",
            str(tmp_path / "logs"),
        ]
        runner = CliRunner()
        result = runner.invoke(main, ["run", "--all", *common, "--limit", "2"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        csv = tmp_path / "out.csv"
        assert runner.invoke(main, ["aggregate", *common, "--output", str(csv)]).exit_code == 0
    finally:
        server.stop()
    frame = pd.read_csv(csv).set_index("multiplier")
    assert set(frame["steering_scale"]) == {"residual"} and set(frame["steering_layer"]) == {2}
    assert (
        frame["steering_vector_norm"].tolist() == [25.0] * 3 and frame["steering_residual_norm"].tolist() == [25.0] * 3
    )
    assert frame.loc[0.5, "steering_relative_norm"] == pytest.approx(0.5)
    assert (
        frame.loc[1.0, "steering_relative_norm"] == pytest.approx(1.0)
        and frame.loc[0.0, "steering_relative_norm"] == 0.0
    )
