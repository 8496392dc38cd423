"""`steerbench serve --scale raw|residual`: the vectors each server adds, and the norms its provenance records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from steerbench.cli.main import main
from steerbench.core.config import load_deployments
from steerbench.serve.plan import ServeOptions, deployment_lines, parse_multipliers
from steerbench.serve.session import ServeRequest, build_plan
from steerbench.serve.vectors import VectorError, write_safetensors

HAVE_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4}))
    return folder


@pytest.fixture
def made(tmp_path: Path) -> Path:
    """Two layers, norms sqrt(140) and sqrt(8), with residual norms 20 and 40 recorded."""
    path = tmp_path / "made.safetensors"
    write_safetensors(
        path,
        {"layer.1": np.arange(8, dtype=np.float32), "layer.3": np.ones(8, dtype=np.float32) * 2},
        {"residual_norms": json.dumps({"1": 20.0, "3": 40.0})},
    )
    return path


def plan_for(
    model_dir: Path, vector: Path, scale: str, layer: int | None = None, normalize: bool = False, one_server=False
):
    options = ServeOptions(model=str(model_dir), multipliers=parse_multipliers("-2,0,0.5"), one_server=one_server)
    request = ServeRequest(options, vector, layer, normalize, Path("d.jsonl"), Path("logs"), dry_run=True, scale=scale)
    plan, _ = build_plan(request)
    return plan, deployment_lines(plan, None)


@pytest.mark.parametrize("one_server", [False, True])
def test_residual_scale_makes_each_layer_as_long_as_its_residual_norm(tmp_path, model_dir, made, one_server):
    plan, lines = plan_for(model_dir, made, "residual", one_server=one_server)
    for server in plan.servers:
        served = {int(layer): np.array(values) for layer, values in server.settings["layers"].items()}
        assert np.linalg.norm(served[1]) == pytest.approx(20.0) and np.linalg.norm(served[3]) == pytest.approx(40.0)
        assert np.allclose(served[1] / 20.0, np.arange(8) / np.linalg.norm(np.arange(8)))  # the direction is kept
    steering = {line["multiplier"]: line["steering"] for line in lines}
    assert steering["-2"]["scale"] == "residual" and steering["-2"]["layer"] == [1, 3]
    assert steering["-2"]["vector_norm"] == [20.0, 40.0] and steering["-2"]["residual_norm"] == [20.0, 40.0]
    assert steering["-2"]["relative_norm"] == [2.0, 2.0]
    assert steering["0.5"]["relative_norm"] == [0.5, 0.5] and steering["0"]["relative_norm"] == [0.0, 0.0]
    assert any("mean residual norm 20" in note for note in plan.notes)


def test_raw_scale_keeps_the_file_and_still_reports_relative_norms(model_dir, made):
    plan, lines = plan_for(model_dir, made, "raw", layer=3)
    assert np.allclose(plan.servers[0].settings["layers"]["3"], [2.0] * 8)
    steering = lines[0]["steering"]
    assert steering["layer"] == 3 and steering["scale"] == "raw"
    assert steering["vector_norm"] == pytest.approx(np.sqrt(32)) and steering["residual_norm"] == 40.0
    assert steering["relative_norm"] == pytest.approx(2 * np.sqrt(32) / 40, abs=1e-6)


def test_a_plain_file_has_no_residual_norm(tmp_path, model_dir):
    np.save(tmp_path / "v.npy", np.arange(8, dtype=np.float32))
    _, lines = plan_for(model_dir, tmp_path / "v.npy", "raw", layer=1)
    assert lines[0]["steering"] == {
        "model": model_dir.name,
        "layer": 1,
        "vector_sha256": lines[0]["steering"]["vector_sha256"],
        "normalized": False,
        "scale": "raw",
        "vector_norm": pytest.approx(np.sqrt(140)),
        "operation": "add",
        "positions": "all",
    }


def test_deployments_with_the_new_fields_are_read_back(tmp_path, model_dir, made):
    _, lines = plan_for(model_dir, made, "residual")
    path = tmp_path / "deployments.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    deployments = load_deployments(str(path))
    assert deployments[0].steering["relative_norm"] == [2.0, 2.0]


def test_residual_with_normalize_is_refused(model_dir, made):
    with pytest.raises(VectorError, match="choose one"):
        plan_for(model_dir, made, "residual", normalize=True)
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--model",
            str(model_dir),
            "--vector",
            str(made),
            "--multipliers",
            "0,1",
            "--scale",
            "residual",
            "--normalize",
            "--dry-run",
        ],
    )
    assert result.exit_code == 2 and result.output.startswith("error: --scale residual with --normalize")


@pytest.mark.skipif(HAVE_TORCH, reason="torch and transformers are installed here: residual norms would be measured")
def test_residual_without_norms_or_torch_is_one_error(tmp_path, model_dir):
    np.save(tmp_path / "v.npy", np.arange(8, dtype=np.float32))
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--model",
            str(model_dir),
            "--vector",
            str(tmp_path / "v.npy"),
            "--layer",
            "1",
            "--multipliers",
            "0,1",
            "--scale",
            "residual",
            "--dry-run",
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'v.npy'} records no residual-stream norms, and measuring them on the model needs torch and "
        "transformers: pip install 'steerbench[vector]'"
    ]
