"""Keys never leak: plant distinctive keys, make a server echo them back in error bodies, and
search every byte steerbench (and Inspect under it) writes or prints. Also: running
model-written code on this machine is an explicit, announced choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.helpers import all_bytes_under, toy_benchmarks, toy_responder, write_jsonl

from steerbench.cli import main
from steerbench.execution.redaction import Redactor
from steerbench.sim.simulator import SimulatedEndpoint, SimulatedFleet

# distinctive, so that a hit can only be a leak
LITERAL_KEY = "sk-PLANTED-literal-7Qx9Zr4Lm2Vb8Nc6"
ENV_KEY = "sk-PLANTED-envvar-3Hs5Kd1Wq7Ty0Up4"
ENV_VAR = "STEERBENCH_TEST_PLANTED_KEY"


def echo_401(endpoint: SimulatedEndpoint, number: int) -> str | None:
    """Every 4th request is rejected with a body that quotes the Authorization header."""
    return "401" if number % 4 == 1 else None


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steerbench.cli", *args], capture_output=True, text=True, timeout=180, env=env
    )


def in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """A command run with CliRunner, shaped like a finished subprocess."""
    result = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def leaks(data: bytes, keys: list[str]) -> list[str]:
    return [key for key in keys if key.encode() in data]


def test_planted_keys_appear_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run in worker processes against servers that echo the key on 401, then aggregate,
    status, a dry run and a run that fails: no key in any output, nor in any byte written
    under the working folder, log root, CSV, or Inspect's data folder (traces, sample buffers)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(ENV_VAR, ENV_KEY)
    keys = [LITERAL_KEY, ENV_KEY]
    literal = SimulatedEndpoint(0.0, toy_responder, key=LITERAL_KEY, fault=echo_401).start()
    from_env = SimulatedEndpoint(1.0, toy_responder, key=ENV_KEY, fault=echo_401).start()
    try:
        deployments = write_jsonl(
            tmp_path / "deployments.jsonl",
            [
                literal.deployment_line(),
                {**from_env.deployment_line(), "key": f"${{{ENV_VAR}}}"},
            ],
        )
        written = deployments.read_bytes()
        benchmarks = toy_benchmarks(tmp_path / "benchmarks.jsonl")
        files = ["--deployments", str(deployments), "--benchmarks", str(benchmarks)]
        logs = str(tmp_path / "logs")

        # the run in its own process (workers print to the real stdout/stderr); the rest in this one
        outputs = [
            cli("run", "--all", *files, "--log-root", logs, "--workers", "2", "--retry-wait", "0.1"),
            in_process("run", "--all", *files, "--log-root", logs, "--dry-run"),
            in_process("aggregate", *files, "--log-root", logs, "--output", str(tmp_path / "data" / "out.csv")),
        ]
        if "status" in main.commands:
            outputs.append(in_process("status", *files, "--log-root", logs))
            outputs.append(in_process("status", *files, "--log-root", logs, "--json"))
        # the echo happened: both servers rejected requests and quoted the header
        assert literal.stats.requests > literal.stats.completions > 0
        assert from_env.stats.requests > from_env.stats.completions > 0

        # a run in which every request is rejected (and echoed): errors, not leaks
        from_env.fault = lambda endpoint, number: "401"
        outputs.append(
            in_process(
                "run",
                "--multiplier",
                "1.0",
                "--retry-wait",
                "0.1",
                *files,
                "--log-root",
                str(tmp_path / "logs-failing"),
                "--workers",
                "1",
                "--limit",
                "1",
                "--benchmark",
                "Arithmetic",
            )
        )
    finally:
        literal.stop()
        from_env.stop()

    assert outputs[0].returncode == 0, outputs[0].stdout + outputs[0].stderr
    assert "<key hidden>" in outputs[1].stdout and f"${{{ENV_VAR}}}" in outputs[1].stdout
    assert (tmp_path / "data" / "out.csv").exists()
    assert outputs[-1].returncode == 1  # the failing run failed, and said so
    for output in outputs:
        assert leaks((output.stdout + output.stderr).encode(), keys) == [], output.args

    found = [
        (path, leaks(data, keys))
        for path, data in all_bytes_under(tmp_path)
        if path != deployments and leaks(data, keys)
    ]
    assert found == []
    assert any((tmp_path / "xdg").rglob("trace-*")), "Inspect's trace folder was not where the test looks"
    # the ${VAR} key was read when the run started, and never written back
    assert deployments.read_bytes() == written
    assert ENV_KEY.encode() not in written


def test_env_var_key_is_resolved_at_run_time_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable, a dry run still works (nothing to resolve); the run itself stops
    with exit code 2 naming the variable, before any request."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    with SimulatedFleet([0.0], toy_responder, key=ENV_KEY) as fleet:
        deployments = write_jsonl(
            tmp_path / "deployments.jsonl", [{**fleet.endpoints[0].deployment_line(), "key": f"${{{ENV_VAR}}}"}]
        )
        benchmarks = toy_benchmarks(tmp_path / "benchmarks.jsonl")
        args = ["run", "--all", "--deployments", str(deployments), "--benchmarks", str(benchmarks), "--workers", "1"]
        dry = CliRunner().invoke(main, [*args, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        failed = CliRunner().invoke(main, args)
        assert failed.exit_code == 2
        assert f"environment variable {ENV_VAR} is not set" in failed.stderr and "line 1" in failed.stderr
        assert fleet.endpoints[0].stats.model_list_requests == 0 and fleet.endpoints[0].stats.requests == 0

        monkeypatch.setenv(ENV_VAR, ENV_KEY)  # set later: the same file now runs
        ok = CliRunner().invoke(main, args)
        assert ok.exit_code == 0, ok.output
        assert ENV_KEY not in ok.output


def test_guarded_model_never_receives_an_echoed_key() -> None:
    """The masking transport alone: the OpenAI SDK's exception for a 401 that quotes the
    Authorization header holds no key, also after Inspect rebuilds the client (which it does
    after an authentication failure)."""
    import asyncio

    import openai
    from inspect_ai.model import get_model

    key = "sk-PLANTED-transport-2Wd9Kq4Lx"
    endpoint = SimulatedEndpoint(0.0, toy_responder, key=key, fault=lambda e, n: "401").start()
    try:
        model = get_model(
            "openai-api/steer_guard/simulated-steered-model", base_url=endpoint.url, api_key=key, memoize=False
        )
        assert Redactor([key]).guard_model(model)

        async def rejected_text() -> str:
            try:
                await model.api.client.with_options(max_retries=0).chat.completions.create(
                    model="simulated-steered-model", messages=[{"role": "user", "content": "Question 1: hi"}]
                )
            except openai.AuthenticationError as e:
                return f"{e} {e.body} {e.response.text} {dict(e.response.headers)}"
            raise AssertionError("the server was meant to reject the request")

        async def both() -> tuple[str, str]:
            first = await rejected_text()
            await model.api.refresh_credentials()  # closes the client; Inspect builds a new one
            return first, await rejected_text()

        for text in asyncio.run(both()):
            assert "Authorization: Bearer ***" in text
            assert key not in text
        assert endpoint.stats.requests == 2
    finally:
        endpoint.stop()


# ---------------------------------------------------------------- code execution


def test_local_sandbox_is_announced_before_anything_runs(study: dict[str, Path]) -> None:
    """`--sandbox local` runs model-written code on this machine: the run says so on stderr
    before the preflight, and the dry run says so too."""
    args = [
        "run",
        "--multiplier",
        "0.0",
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
        "--log-root",
        str(study["logs"]),
        "--workers",
        "1",
        "--benchmark",
        "Arithmetic",
        "--limit",
        "1",
    ]
    dry = CliRunner().invoke(main, [*args, "--sandbox", "local", "--dry-run"])
    assert dry.exit_code == 0 and "sandbox=local" in dry.output and "model-written code" in dry.output
    result = CliRunner().invoke(main, [*args, "--sandbox", "local"])
    assert result.exit_code == 0, result.output
    assert "WARNING: sandbox=local" in result.stderr
    assert result.output.index("WARNING: sandbox=local") < result.output.index("preflight:")
    quiet = CliRunner().invoke(main, args)  # no local sandbox chosen: no announcement
    assert quiet.exit_code == 0 and "sandbox=local" not in quiet.output


def test_local_sandbox_from_benchmarks_file_is_announced(study: dict[str, Path]) -> None:
    rows: list[dict[str, Any]] = [json.loads(line) for line in study["benchmarks"].read_text().splitlines()]
    write_jsonl(study["benchmarks"], [{**rows[0], "sandbox": "local"}, rows[1]])
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--all",
            "--deployments",
            str(study["deployments"]),
            "--benchmarks",
            str(study["benchmarks"]),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0
    assert "WARNING: sandbox=local: Arithmetic will execute model-written code" in result.output
