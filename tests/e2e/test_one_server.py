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


def test_a_shared_server_gets_the_default_cap_of_32(tmp_path, one_server):
    """Five multipliers on one URL, 24 questions per task: without a cap each multiplier could
    keep 20 requests in flight (100 at once); the default shares 32 evenly: 6 each, 30 at most."""
    server, deployments, benchmarks = one_server
    server.latency = 1.5  # long enough that the five workers' requests overlap even on a loaded machine
    many = [{**json.loads(line), "task_args": {"questions": 24}} for line in benchmarks.read_text().splitlines()[:1]]
    write_jsonl(benchmarks, many)
    common = ["--deployments", str(deployments), "--benchmarks", str(benchmarks), "--log-root", str(tmp_path / "logs")]
    dry = cli("run", "--all", *common, "--dry-run")
    assert dry.exit_code == 0, dry.output
    servers = dry.output.split("connections per server:\n")[1].splitlines()
    assert servers[0] == (
        f"  {server.url.rstrip('/')}: 5 multipliers, 6 connections each, at most 30 requests at once "
        "(cap 32: the default for a server that several multipliers share; "
        "--max-connections-per-server to change it)"
    )
    result = cli("run", "--all", *common)
    assert result.exit_code == 0, result.output
    assert f"server {server.url.rstrip('/')}: 5 multipliers, 6 connections each, at most 30" in result.output
    assert 6 < server.stats.peak_in_flight <= 30  # several multipliers at once, never above the cap
    loaded = load_deployments(deployments)
    plan = build_plan(loaded, *resolve_benchmarks_for(benchmarks), RunOptions(all=True))
    jobs = build_jobs(
        plan,
        str(tmp_path / "logs"),
        {d.multiplier.value: server.key for d in loaded},
        {d.multiplier.value: server.model for d in loaded},
    )
    assert [job.max_connections for job in jobs] == [6] * 5  # what each worker gives Inspect


def test_dry_run_shows_the_cap_of_each_server(tmp_path, one_server):
    server, deployments, benchmarks = one_server
    dedicated = {"multiplier": "2.0", "url": "http://10.0.0.9:8001/v1", "key": "k"}  # a dry run sends nothing
    lines = [*server.shared_deployment_lines(MULTIPLIERS), dedicated]
    write_jsonl(deployments, lines)
    common = ["--deployments", str(deployments), "--benchmarks", str(benchmarks), "--log-root", str(tmp_path / "logs")]

    def servers(*extra: str) -> list[str]:
        result = cli("run", "--all", *common, "--dry-run", *extra)
        assert result.exit_code == 0, result.output
        return result.output.split("connections per server:\n")[1].splitlines()[:2]

    url = server.url.rstrip("/")
    assert servers()[1] == "  http://10.0.0.9:8001/v1: 1 multiplier, 20 connections each, at most 20 requests at once"
    assert servers("--max-connections", "4")[0].startswith(f"  {url}: 5 multipliers, 4 connections each, at most 20 ")
    assert servers("--max-connections-per-server", "12") == [
        f"  {url}: 5 multipliers, 2 connections each, at most 10 requests at once (cap 12: --max-connections-per-server)",
        "  http://10.0.0.9:8001/v1: 1 multiplier, 12 connections each, at most 12 requests at once "
        "(cap 12: --max-connections-per-server)",
    ]
    assert server.stats.requests == 0


def test_a_cap_below_one_connection_per_multiplier_is_refused(tmp_path, one_server):
    server, deployments, benchmarks = one_server
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--all",
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
            "--log-root",
            str(tmp_path / "logs"),
            "--max-connections-per-server",
            "4",
        ],
    )
    assert result.exit_code == 2
    assert "--max-connections-per-server" in result.output and "5 multipliers" in result.output
    assert server.stats.requests == 0 and server.stats.model_list_requests == 0
    assert not (tmp_path / "logs").exists()


def test_each_deployment_keeps_its_own_identity(tmp_path, one_server):
    server, deployments, benchmarks = one_server
    loaded = load_deployments(deployments)
    plan = build_plan(loaded, *resolve_benchmarks_for(benchmarks), RunOptions(all=True))
    jobs = build_jobs(
        plan,
        str(tmp_path / "logs"),
        {d.multiplier.value: server.key for d in loaded},
        {d.multiplier.value: server.model for d in loaded},
    )
    assert len({job.url for job in jobs}) == 1
    assert len({job.identity for job in jobs}) == len(MULTIPLIERS)  # replay journals, Inspect models: one each
    assert {json.dumps(job.extra_body) for job in jobs} == {
        json.dumps({"vllm_xargs": {"steer_multiplier": m}}) for m in MULTIPLIERS
    }


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


@pytest.mark.parametrize(
    "extra_body, problem",
    [
        ([1, 2], "must be a JSON object"),
        ({"messages": []}, "must not set 'messages'"),
        ({"model": "x"}, "must not set 'model'"),
    ],
)
def test_extra_body_is_validated(tmp_path, extra_body, problem):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"multiplier": 1, "url": "http://127.0.0.1:1/v1", "key": "k", "extra_body": extra_body}]
    )
    result = CliRunner().invoke(
        main, ["run", "--all", "--deployments", str(path), "--benchmarks", str(toy_benchmarks(tmp_path / "b.jsonl"))]
    )
    assert result.exit_code == 2
    assert f"{path}, line 1, field 'extra_body': {problem}" in result.output
