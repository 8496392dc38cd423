"""Several deployments on one URL (per-request steering): extra_body, connection caps, one probe, check."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from tests.conftest import MULTIPLIERS
from tests.helpers import expected_accuracy, toy_benchmarks, toy_responder, write_jsonl

from steerbench.cli import main
from steerbench.core.config import load_deployments
from steerbench.core.plan import RunOptions, build_plan
from steerbench.execution.run import build_jobs
from steerbench.sim.simulator import SimulatedEndpoint
from steerbench.tasks.resolve import resolve_benchmarks


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def one_server(tmp_path: Path):
    server = SimulatedEndpoint(0.0, toy_responder, per_request=True, latency=0.05, keep_bodies=True).start()
    deployments = write_jsonl(tmp_path / "deployments.jsonl", server.shared_deployment_lines(MULTIPLIERS))
    benchmarks = toy_benchmarks(tmp_path / "benchmarks.jsonl")
    yield server, deployments, benchmarks
    server.stop()


def test_grid_on_one_server_has_each_multipliers_scores(tmp_path, one_server):
    server, deployments, benchmarks = one_server
    common = ["--deployments", str(deployments), "--benchmarks", str(benchmarks), "--log-root", str(tmp_path / "logs")]
    result = cli("run", "--all", *common, "--max-connections", "20", "--max-connections-per-server", "5")
    assert result.exit_code == 0, result.output
    assert "10 done, 0 failed" in result.output
    assert server.stats.model_list_requests == 1  # the shared URL is probed once
    assert 1 <= server.stats.peak_in_flight <= 5  # the cap is on the sum over the five multipliers
    sent = {body["vllm_xargs"]["steer_multiplier"] for body in server.stats.bodies}
    assert sent == set(MULTIPLIERS)
    csv = tmp_path / "out.csv"
    assert cli("aggregate", *common, "--output", str(csv)).exit_code == 0
    frame = pd.read_csv(csv, dtype={"multiplier": str})
    assert len(frame) == 10 and set(frame["status"]) == {"success"}
    for _, row in frame.iterrows():
        assert row["accuracy"] == pytest.approx(expected_accuracy(float(row["multiplier"]))), row.to_dict()


def test_without_a_cap_the_server_sees_more_than_five(tmp_path, one_server):
    server, deployments, benchmarks = one_server
    server.latency = 1.5  # long enough that the five workers' requests overlap even on a loaded machine
    result = cli("run", "--all", "--deployments", str(deployments), "--benchmarks", str(benchmarks),
                 "--log-root", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.output
    assert server.stats.peak_in_flight > 5


def test_a_cap_below_one_connection_per_multiplier_is_refused(tmp_path, one_server):
    server, deployments, benchmarks = one_server
    result = CliRunner().invoke(main, ["run", "--all", "--deployments", str(deployments), "--benchmarks", str(benchmarks),
                                       "--log-root", str(tmp_path / "logs"), "--max-connections-per-server", "4"])
    assert result.exit_code == 2
    assert "--max-connections-per-server" in result.output and "5 multipliers" in result.output
    assert server.stats.requests == 0 and server.stats.model_list_requests == 0
    assert not (tmp_path / "logs").exists()


def test_each_deployment_keeps_its_own_identity(tmp_path, one_server):
    server, deployments, benchmarks = one_server
    loaded = load_deployments(deployments)
    plan = build_plan(loaded, *resolve_benchmarks_for(benchmarks), RunOptions(all=True))
    jobs = build_jobs(plan, str(tmp_path / "logs"), {d.multiplier.value: server.key for d in loaded},
                      {d.multiplier.value: server.model for d in loaded})
    assert len({job.url for job in jobs}) == 1
    assert len({job.identity for job in jobs}) == len(MULTIPLIERS)  # replay journals, Inspect models: one each
    assert {json.dumps(job.extra_body) for job in jobs} == {json.dumps({"vllm_xargs": {"steer_multiplier": m}}) for m in MULTIPLIERS}


def resolve_benchmarks_for(path: Path):
    from steerbench.core.config import load_benchmarks

    benchmarks = load_benchmarks(path)
    return benchmarks, resolve_benchmarks(benchmarks)


def test_check_compares_answers_of_multipliers_sharing_one_server(tmp_path):
    def steered(multiplier, messages, body):
        return f"an answer steered at {multiplier}"

    server = SimulatedEndpoint(0.0, steered, per_request=True).start()
    try:
        lines = server.shared_deployment_lines([0.0, 1.0])
        benchmarks = toy_benchmarks(tmp_path / "benchmarks.jsonl")
        good = write_jsonl(tmp_path / "good.jsonl", lines)
        result = cli("check", "--deployments", str(good), "--benchmarks", str(benchmarks))
        assert result.exit_code == 0, result.output
        assert "gave identical answers" not in result.output
        assert server.stats.model_list_requests == 1
        # multiplier 1 without its extra_body reaches the server unsteered, like multiplier 0
        lines[1].pop("extra_body")
        broken = write_jsonl(tmp_path / "broken.jsonl", lines)
        result = cli("check", "--deployments", str(broken), "--benchmarks", str(benchmarks))
        assert "warning: multipliers 0.0 and 1.0 gave identical answers" in result.output
    finally:
        server.stop()


@pytest.mark.parametrize("extra_body, problem", [
    ([1, 2], "must be a JSON object"),
    ({"messages": []}, "must not set 'messages'"),
    ({"model": "x"}, "must not set 'model'"),
])
def test_extra_body_is_validated(tmp_path, extra_body, problem):
    path = write_jsonl(tmp_path / "d.jsonl", [{"multiplier": 1, "url": "http://127.0.0.1:1/v1", "key": "k",
                                                "extra_body": extra_body}])
    result = CliRunner().invoke(main, ["run", "--all", "--deployments", str(path),
                                       "--benchmarks", str(toy_benchmarks(tmp_path / "b.jsonl"))])
    assert result.exit_code == 2
    assert f"{path}, line 1, field 'extra_body': {problem}" in result.output
