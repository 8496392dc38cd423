"""`steerbench serve --operation add|ablate --positions all|prompt|generated`, without vLLM: bad input,
settings, cache salts, provenance, and which tokens of a step are steered. Served exactness is in
tests/vllm_lane/test_operations.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from steerbench.cli.main import main
from steerbench.core.config import load_deployments
from steerbench.results.aggregate import _steering_columns
from steerbench.serve.plan import (
    ServeInputError,
    ServeOptions,
    cache_salt,
    deployment_lines,
    parse_multipliers,
    plan_servers,
)
from steerbench.serve.plugin import steered_positions, steering_choice, token_multipliers
from steerbench.serve.vectors import SteeringVectors


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4}))
    return folder


def serve(tmp_path: Path, model_dir: Path, vector: np.ndarray, *extra: str):
    np.save(tmp_path / "v.npy", vector)
    args = [
        "serve",
        "--model",
        str(model_dir),
        "--vector",
        str(tmp_path / "v.npy"),
        "--layer",
        "1",
        "--multipliers",
        "0,1",
        "--out",
        str(tmp_path / "deployments.jsonl"),
        "--log-dir",
        str(tmp_path / "logs"),
        *extra,
    ]
    return CliRunner().invoke(main, args)


def assert_one_error(result, tmp_path: Path, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(needle in lines[0] for needle in needles), lines[0]
    assert not (tmp_path / "deployments.jsonl").exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("--operation", "subtract", "expected one of add, ablate"),
        ("--positions", "decode", "expected one of all, prompt, generated"),
    ],
)
def test_unknown_operation_or_positions_is_one_line(tmp_path, model_dir, flag, value, needle):
    assert_one_error(
        serve(tmp_path, model_dir, np.ones(8, dtype=np.float32), flag, value), tmp_path, f"{flag} {value!r}", needle
    )


@pytest.mark.parametrize("one_server", [False, True])
def test_ablating_a_zero_vector_is_refused_before_anything_starts(tmp_path, model_dir, one_server):
    extra = ("--operation", "ablate", "--dry-run", *(("--one-server",) if one_server else ()))
    assert_one_error(
        serve(tmp_path, model_dir, np.zeros(8, dtype=np.float32), *extra),
        tmp_path,
        "--operation ablate",
        "layer 1",
        "all zeros",
    )


def test_adding_a_zero_vector_is_allowed(tmp_path, model_dir):
    result = serve(tmp_path, model_dir, np.zeros(8, dtype=np.float32), "--dry-run")
    assert result.exit_code == 0, result.output


def plan(operation: str, positions: str, one_server: bool, residual_norms: dict[int, float] | None = None):
    vectors = SteeringVectors(
        {3: np.ones(8)}, "ab" * 32, False, residual_norms or {}, scale="residual" if residual_norms else "raw"
    )
    options = ServeOptions(
        model="m",
        multipliers=parse_multipliers("-1,0,0.5"),
        one_server=one_server,
        operation=operation,
        positions=positions,
    )
    servers = 1 if one_server else 3
    made = plan_servers(options, vectors, [f"k{i}" for i in range(servers)], python="python")
    return made, deployment_lines(made, None)


@pytest.mark.parametrize("one_server", [False, True])
def test_settings_and_provenance_carry_operation_and_positions(one_server, tmp_path):
    made, lines = plan("ablate", "generated", one_server)
    for server in made.servers:
        assert server.settings["operation"] == "ablate" and server.settings["positions"] == "generated"
    assert {(line["steering"]["operation"], line["steering"]["positions"]) for line in lines} == {
        ("ablate", "generated")
    }
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    loaded = load_deployments(tmp_path / "d.jsonl")  # what run reads back and writes into every log
    assert {(d.steering["operation"], d.steering["positions"]) for d in loaded} == {("ablate", "generated")}
    columns = _steering_columns(loaded[0].steering)
    assert columns["steering_operation"] == "ablate" and columns["steering_positions"] == "generated"


def test_a_deployment_from_before_operations_reads_as_add_at_every_position():
    columns = _steering_columns({"vector_sha256": "ab" * 32, "layer": 3, "model": "m"})
    assert (columns["steering_operation"], columns["steering_positions"]) == ("add", "all")
    assert steering_choice({"mode": "fixed", "multiplier": 1.0}) == ("add", "all")


def test_ablation_records_no_relative_norm():
    """relative_norm = |m| ||v|| / ||h|| describes an added vector; an ablation's m is a share of a component."""
    _, added = plan("add", "all", True, residual_norms={3: 4.0})
    _, ablated = plan("ablate", "all", True, residual_norms={3: 4.0})
    assert added[0]["steering"]["relative_norm"] == pytest.approx(np.sqrt(8) / 4.0)
    assert all("relative_norm" not in line["steering"] for line in ablated)


def test_cache_salt_is_one_per_multiplier_and_setting():
    salts = set()
    for operation in ("add", "ablate"):
        for positions in ("all", "prompt", "generated"):
            _, lines = plan(operation, positions, True)
            salts |= {line["extra_body"]["cache_salt"] for line in lines}
    assert len(salts) == 2 * 3 * 3
    assert cache_salt({"mode": "per_request"}, "1") == "steerbench-m1"  # add at every position: as before


def test_steered_positions_follow_the_runners_positions():
    # three requests in one step: a whole prompt of 5; a decode step at position 7 (prompt 5);
    # a request recomputed after preemption whose chunk spans its prompt's end (positions 3..6, prompt 5)
    scheduled, computed, prompt = [5, 1, 4], [0, 7, 3], [5, 5, 5]
    is_prompt = np.array([True] * 5 + [False] + [True, True, False, False])
    assert steered_positions("prompt", scheduled, computed, prompt).tolist() == is_prompt.tolist()
    assert steered_positions("generated", scheduled, computed, prompt).tolist() == (~is_prompt).tolist()
    assert steered_positions("all", scheduled, computed, prompt).all()
    values = token_multipliers([1.0, -2.0, 0.5], "generated", scheduled, computed, prompt)
    assert values.tolist() == [0, 0, 0, 0, 0, -2.0, 0, 0, 0.5, 0.5]


def test_a_prefix_cache_hit_starts_at_its_computed_count():
    """A prompt of 40 whose first 32 came from the prefix cache schedules 8 tokens at positions 32..39."""
    assert steered_positions("prompt", [8], [32], [40]).all()
    assert not steered_positions("generated", [8], [32], [40]).any()


def test_ablation_projects_the_sum_of_hidden_states_and_residual():
    torch = pytest.importorskip("torch")
    from steerbench.serve.plugin import residual_stream, steering_delta

    generator = torch.Generator().manual_seed(0)
    hidden, residual = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    direction = torch.randn(8, generator=generator)
    unit = direction / direction.norm()
    for scale in (1.0, 0.5, torch.tensor([[1.0], [0.0], [0.5], [-1.0], [2.0]])):
        delta = steering_delta((hidden, residual), scale, unit, "ablate")
        stream = hidden + residual
        expected = stream - scale * (stream @ unit).unsqueeze(-1) * unit
        torch.testing.assert_close(hidden + delta + residual, expected)
    removed = hidden + steering_delta((hidden, residual), 1.0, unit, "ablate") + residual
    torch.testing.assert_close(removed @ unit, torch.zeros(5), atol=1e-5, rtol=0)
    # hidden_states alone is not the stream: projecting it would leave the residual's component
    assert not torch.allclose(residual_stream((hidden, residual)) @ unit, hidden @ unit)
    torch.testing.assert_close(hidden + steering_delta(hidden, 2.0, direction, "add"), hidden + 2.0 * direction)


def compiled_plan(compiled, cpu_build: bool, version: str | None):
    vectors = SteeringVectors({3: np.ones(8)}, "ab" * 32, False, {})
    options = ServeOptions(
        model="m",
        multipliers=parse_multipliers("0,1"),
        one_server=True,
        compiled=compiled,
        cpu_build=cpu_build,
        vllm_version=version,
    )
    return plan_servers(options, vectors, ["k"], python="python")


@pytest.mark.parametrize(
    "compiled, cpu_build, version, eager",
    [
        (None, True, "0.32.0+cpu", True),  # proven, but slower than eager on CPU: eager unless asked
        (None, False, "0.33.0", True),
        (None, False, None, True),  # no vLLM here (a dry run)
        (False, True, "0.32.0+cpu", True),
        (True, True, "0.32.0+cpu", False),  # proven by the vllm lane
        (True, True, "0.32.1+cpu", False),
    ],
)
def test_compiled_only_when_asked_and_proven(compiled, cpu_build, version, eager):
    made = compiled_plan(compiled, cpu_build, version)
    assert ("--enforce-eager" in made.servers[0].argv) == eager


def test_compiled_where_it_is_not_proven_is_refused_naming_the_flag():
    with pytest.raises(
        ServeInputError,
        match=r"--compiled: compiled steering is proven on vLLM 0\.32\.x \(CPU\) only, "
        r"this is vLLM 0\.33\.0 \(GPU build\); use --eager",
    ):
        compiled_plan(True, False, "0.33.0")


@pytest.mark.parametrize("flag, ours", [("--no-enforce-eager", "--compiled"), ("--enforce-eager", "--eager")])
def test_eager_flags_after_the_separator_point_to_ours(tmp_path, model_dir, flag, ours):
    result = serve(tmp_path, model_dir, np.ones(8, dtype=np.float32), "--dry-run", "--", flag)
    assert_one_error(result, tmp_path, f"{flag} after `--`", ours)
