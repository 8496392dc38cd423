"""`steerbench check`: run's preflight on its own, plus the steering sanity check, against local servers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.helpers import toy_benchmarks, write_jsonl

from steerbench.execution.check import SANITY_PROMPTS
from steerbench.cli import main
from steerbench.sim.simulator import SimulatedEndpoint, message_text


def steered(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    """An answer that changes with the multiplier, as a steered model's would."""
    prompt = message_text(messages[-1])
    mood = "calm" if multiplier < 0 else "restless" if multiplier < 1 else "furious"
    return f"{prompt.split()[0]} ... a {mood} answer of {len(prompt) + int(multiplier * 10)} words"


def unsteered(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    """The same answer whatever the multiplier: steering is not applied."""
    return f"A plain answer to: {message_text(messages[-1])[:30]}"


@pytest.fixture
def servers() -> Iterator[list[SimulatedEndpoint]]:
    started: list[SimulatedEndpoint] = []

    def start(multiplier: float, responder=steered) -> SimulatedEndpoint:
        endpoint = SimulatedEndpoint(multiplier, responder, keep_bodies=True).start()
        started.append(endpoint)
        return endpoint

    yield start  # type: ignore[misc]
    for endpoint in started:
        endpoint.stop()


def write_study(root: Path, lines: list[dict[str, Any]]) -> None:
    write_jsonl(root / "deployments.jsonl", lines)
    toy_benchmarks(root / "benchmarks.jsonl")


def check(*args: str) -> Any:
    return CliRunner().invoke(main, ["check", *args])


def test_wrong_key_down_and_identical_answers(tmp_path: Path, servers) -> None:
    good_low, good_high = servers(-1.0), servers(1.5)
    twin_a, twin_b = servers(0.5, unsteered), servers(1.0, unsteered)
    wrong_key = servers(2.0)
    down = servers(3.0)
    lines = [e.deployment_line() for e in (good_low, twin_a, twin_b, good_high, wrong_key, down)]
    down.stop()  # its port is now closed: nothing answers there
    lines[4]["key"] = "not-the-right-key-0123"
    write_study(tmp_path, lines)

    result = check()
    out = result.output
    assert result.exit_code == 1, out
    endpoint_lines = {
        line.split()[1]: line
        for line in out.splitlines()
        if line.startswith("  multiplier") and ("latency" in line or "FAILED" in line)
    }
    # reachable, key accepted, served model, latency: per endpoint
    for label in ("-1.0", "0.5", "1.0", "1.5"):
        assert " ok " in endpoint_lines[label] and "model simulated-steered-model" in endpoint_lines[label]
        assert endpoint_lines[label].split("latency ")[1].split()[1] == "ms"
    assert "FAILED  key rejected (HTTP 401)" in endpoint_lines["2.0"]
    assert "FAILED  unreachable" in endpoint_lines["3.0"]
    # the twins are called out, and no other pair is
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: multipliers 0.5 and 1.0 gave identical answers to all {len(SANITY_PROMPTS)} prompts at temperature 0: "
        "the same multiplier is probably deployed twice, or steering is not applied"
    ]
    assert "check failed: 2 problem(s)" in out
    # failing endpoints are not asked; healthy ones got exactly the sanity prompts at temperature 0
    assert wrong_key.stats.completions == 0
    for endpoint in (good_low, twin_a, twin_b, good_high):
        assert [message_text(b["messages"][-1]) for b in endpoint.stats.bodies] == list(SANITY_PROMPTS)
        assert all(b["temperature"] == 0 for b in endpoint.stats.bodies)
    for endpoint in (good_low, twin_a, twin_b, good_high, wrong_key):
        assert endpoint.key not in out


def test_healthy_steered_endpoints_pass(tmp_path: Path, servers) -> None:
    endpoints = [servers(m) for m in (-1.0, 0.0, 1.0)]
    write_study(tmp_path, [e.deployment_line() for e in endpoints])
    result = check()
    assert result.exit_code == 0, result.output
    assert "check passed" in result.output and "warning" not in result.output
    matrix = result.output.split("(1.00 = identical):\n")[1].splitlines()[:4]
    assert matrix[0].split() == ["-1.0", "0.0", "1.0"]
    similarities = [float(v) for row in matrix[1:] for v in row.split()[1:] if v != "-"]
    assert len(similarities) == 6 and all(0 < s < 1 for s in similarities)


def test_identical_answers_alone_warn_but_pass(tmp_path: Path, servers) -> None:
    endpoints = [servers(0.0, unsteered), servers(1.0, unsteered)]
    write_study(tmp_path, [e.deployment_line() for e in endpoints])
    result = check()
    assert result.exit_code == 0, result.output
    assert "warning: multipliers 0.0 and 1.0 gave identical answers" in result.output


def test_only_the_chosen_multipliers_are_checked(tmp_path: Path, servers) -> None:
    chosen, other = servers(0.0), servers(1.0)
    write_study(tmp_path, [chosen.deployment_line(), other.deployment_line()])
    result = check("--multiplier", "0")
    assert result.exit_code == 0, result.output
    assert other.stats.requests == 0 and chosen.stats.completions == len(SANITY_PROMPTS)
    assert "fewer than two endpoints" not in result.output


def test_grader_key_and_log_root_are_part_of_the_preflight(tmp_path: Path, servers, monkeypatch) -> None:
    endpoint = servers(0.0)
    write_jsonl(tmp_path / "deployments.jsonl", [endpoint.deployment_line()])
    benchmarks = json.loads(toy_benchmarks(tmp_path / "benchmarks.jsonl").read_text().splitlines()[0])
    write_jsonl(tmp_path / "benchmarks.jsonl", [{**benchmarks, "grader": "anthropic/claude-3-7-sonnet-20250219"}])
    (tmp_path / "a-file").write_text("")
    result = check("--log-root", str(tmp_path / "a-file" / "logs"))
    assert result.exit_code == 1
    assert "needs ANTHROPIC_API_KEY to be set" in result.output
    assert "is not a writable folder" in result.output


def test_check_and_run_share_one_preflight(tmp_path: Path, servers) -> None:
    """The problem `check` reports is the one `run` stops on, before sending any eval request."""
    endpoint = servers(0.0)
    line = {**endpoint.deployment_line(), "key": "wrong-key-4567"}
    write_study(tmp_path, [line])
    checked = check()
    ran = CliRunner().invoke(main, ["run", "--all", "--workers", "1"])
    assert checked.exit_code == ran.exit_code == 1
    problem = next(line.strip()[2:] for line in checked.output.splitlines() if line.strip().startswith("- "))
    assert problem in ran.output and "key rejected (HTTP 401)" in problem
    assert endpoint.stats.completions == 0


def test_unset_key_variable_is_a_user_error(tmp_path: Path, servers, monkeypatch) -> None:
    monkeypatch.delenv("STEER_KEY_CHECK", raising=False)
    write_study(tmp_path, [{**servers(0.0).deployment_line(), "key": "${STEER_KEY_CHECK}"}])
    result = check()
    assert result.exit_code == 2
    assert "STEER_KEY_CHECK is not set" in result.output


# ---------------------------------------------------------------- what the preflight found, fine or not


def preflight_lines(output: str) -> dict[str, str]:
    """item -> the rest of its line ("ok  ..." or "FAILED  ..."), for the items after the endpoints."""
    found = {}
    for line in output.splitlines():
        for item in ("task dependencies:", "grader keys:", "log root:"):
            if line.startswith(item):
                found.setdefault(item[:-1], line[len(item) :].strip())
    return found


def test_check_prints_dependencies_grader_keys_and_the_log_root_when_they_are_fine(
    tmp_path: Path, servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import REPO, STUBS

    monkeypatch.syspath_prepend(str(STUBS))  # IFEval's checker, installed (the labelled stand-in)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-grader-secret-9876")
    endpoint = servers(0.0)
    write_jsonl(tmp_path / "deployments.jsonl", [endpoint.deployment_line()])
    arithmetic = json.loads(toy_benchmarks(tmp_path / "toy.jsonl").read_text().splitlines()[0])
    ifeval = json.loads((REPO / "benchmarks.jsonl").read_text().splitlines()[1])
    assert ifeval["name"] == "IFEval"
    write_jsonl(
        tmp_path / "benchmarks.jsonl", [{**arithmetic, "grader": "anthropic/claude-3-7-sonnet-20250219"}, ifeval]
    )
    monkeypatch.chdir(tmp_path)
    result = check("--log-root", str(tmp_path / "new" / "logs"))
    assert result.exit_code == 0, result.output
    lines = preflight_lines(result.output)
    assert lines == {
        "task dependencies": "ok      2 task(s); IFEval's instruction_following_eval is installed",
        "grader keys": "ok      anthropic/claude-3-7-sonnet-20250219 for Arithmetic: ANTHROPIC_API_KEY is set",
        "log root": f"ok      {tmp_path / 'new' / 'logs'} can be written",
    }, result.output
    assert "sk-ant-grader-secret-9876" not in result.output
    assert "check passed" in result.output and "sandbox" not in result.output


def test_check_prints_what_fails_on_the_same_lines(tmp_path: Path, servers, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import REPO, STUBS

    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != STUBS])
    monkeypatch.delitem(sys.modules, "instruction_following_eval", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    endpoint = servers(0.0)
    write_jsonl(tmp_path / "deployments.jsonl", [endpoint.deployment_line()])
    ifeval = json.loads((REPO / "benchmarks.jsonl").read_text().splitlines()[1])
    arithmetic = json.loads(toy_benchmarks(tmp_path / "toy.jsonl").read_text().splitlines()[0])
    write_jsonl(
        tmp_path / "benchmarks.jsonl", [{**arithmetic, "grader": "anthropic/claude-3-7-sonnet-20250219"}, ifeval]
    )
    (tmp_path / "a-file").write_text("")
    monkeypatch.chdir(tmp_path)
    result = check("--log-root", str(tmp_path / "a-file" / "logs"))
    assert result.exit_code == 1
    lines = preflight_lines(result.output)
    assert lines["task dependencies"].startswith("FAILED  IFEval needs the Python module 'instruction_following_eval'")
    assert lines["grader keys"] == (
        "FAILED  Arithmetic is graded by anthropic/claude-3-7-sonnet-20250219, which needs ANTHROPIC_API_KEY to be set"
    )
    assert lines["log root"].startswith("FAILED  log root ") and "is not a writable folder" in lines["log root"]
    assert "check failed: 3 problem(s)" in result.output


def test_check_warns_about_the_local_sandbox_as_run_does(
    tmp_path: Path, servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = servers(0.0)
    write_jsonl(tmp_path / "deployments.jsonl", [endpoint.deployment_line()])
    arithmetic, capitals = (
        json.loads(line) for line in toy_benchmarks(tmp_path / "toy.jsonl").read_text().splitlines()
    )
    write_jsonl(tmp_path / "benchmarks.jsonl", [{**arithmetic, "sandbox": "local"}, capitals])
    monkeypatch.chdir(tmp_path)
    from_file = check()
    assert from_file.exit_code == 0, from_file.output  # a warning, not a failure
    warning = "WARNING: sandbox=local: Arithmetic will execute model-written code directly on this machine"
    assert warning in from_file.stderr and warning not in from_file.stdout
    assert from_file.output.index("WARNING: sandbox=local") < from_file.output.index("checking 1 endpoint")
    flag = check("--sandbox", "local")
    assert "WARNING: sandbox=local: Arithmetic, Capitals will execute" in flag.stderr
    write_jsonl(tmp_path / "benchmarks.jsonl", [arithmetic, capitals])
    assert "sandbox" not in check().output
    # the same plan, the same warning from run's dry run
    ran = CliRunner().invoke(main, ["run", "--all", "--dry-run", "--sandbox", "local"])
    assert "WARNING: sandbox=local: Arithmetic, Capitals will execute" in ran.output
