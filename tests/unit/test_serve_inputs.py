"""`steerbench serve` without vLLM: every bad input is one clear error (exit 2), and --dry-run starts nothing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from steerbench.cli.main import main
from steerbench.serve.vectors import VectorError, load_vectors


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4}))
    return folder


@pytest.fixture
def vector(tmp_path: Path) -> Path:
    path = tmp_path / "v.npy"
    np.save(path, np.arange(8, dtype=np.float32))
    return path


def serve(*args: str):
    return CliRunner().invoke(main, ["serve", *args])


def base(model_dir: Path, vector: Path, multipliers: str = "-1,0,1") -> list[str]:
    return ["--model", str(model_dir), "--vector", str(vector), "--layer", "1", "--multipliers", multipliers]


def assert_one_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output


def test_missing_model_folder(tmp_path, vector):
    assert_one_error(serve(*base(tmp_path / "nowhere", vector)), "--model", "not found")
    assert not (tmp_path / "deployments.jsonl").exists()


def test_vector_of_the_wrong_size_names_both_sizes(tmp_path, model_dir):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros(5))
    assert_one_error(serve(*base(model_dir, wrong)), "size 5", "hidden size is 8")


@pytest.mark.parametrize("layer", ["4", "-5"])
def test_layer_out_of_range(model_dir, vector, layer):
    args = base(model_dir, vector)
    args[args.index("--layer") + 1] = layer
    assert_one_error(serve(*args), f"--layer {layer}", "4 decoder layers")


@pytest.mark.parametrize(
    "text, needle",
    [("0,x", "'x' is not a number"), ("0,,1", "comma-separated"), ("1,1.0", "repeats"), ("nan", "finite")],
)
def test_malformed_multipliers(model_dir, vector, text, needle):
    assert_one_error(serve(*base(model_dir, vector, text)), "--multipliers", needle)


def test_taken_port(model_dir, vector):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(*base(model_dir, vector, "0,1"), "--port", str(port))
    assert_one_error(result, f"127.0.0.1:{port}", "already in use")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--port", "9000"], "--port after `--`"),
        (["--served-model-name", "x"], "use --served-model-name of steerbench serve"),
        (["--served_model_name=x"], "--served_model_name after `--`"),  # vLLM reads _ as -
        (["--api-key=k"], "--key-env"),
    ],
)
def test_reserved_vllm_flag_after_dash_dash(model_dir, vector, args, needle):
    assert_one_error(serve(*base(model_dir, vector), "--", *args), needle)


@pytest.mark.parametrize("name", ["/home/x/foo", "a//b", "two words", ""])
def test_served_model_name_must_be_a_name(model_dir, vector, name):
    assert_one_error(serve(*base(model_dir, vector), "--served-model-name", name, "--dry-run"), "--served-model-name")


def test_dry_run_prints_commands_with_keys_masked(tmp_path, model_dir, vector):
    result = serve(*base(model_dir, vector), "--port", "8300", "--dry-run", "--", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if "-m vllm.entrypoints.cli.main serve " in line]
    assert len(commands) == 3
    for port, command in zip((8300, 8301, 8302), commands):
        assert f"--port {port}" in command and "VLLM_API_KEY='***'" in command and "--enforce-eager" in command
        assert f"serve {model_dir} --served-model-name model " in command  # vllm serve MODEL, named by its folder
        assert command.endswith("--dtype float32")
    assert "sb-" not in result.output  # no generated key is shown
    assert not (tmp_path / "deployments.jsonl").exists() and not (tmp_path / "serve_logs").exists()


def test_one_server_dry_run_starts_one_server(model_dir, vector):
    result = serve(*base(model_dir, vector), "--one-server", "--dry-run")
    assert result.exit_code == 0, result.output
    assert sum("vllm.entrypoints.cli.main serve" in line for line in result.output.splitlines()) == 1


@pytest.mark.parametrize("suffix", [".npy", ".json", ".safetensors", ".pt"])
def test_vector_formats_single_and_per_layer(tmp_path, suffix):
    single = np.arange(8, dtype=np.float32)
    matrix = np.stack([single * (i + 1) for i in range(4)])
    for name, data in (("single", single), ("per_layer", matrix)):
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".npy":
            np.save(path, data)
        elif suffix == ".json":
            path.write_text(json.dumps(data.tolist()))
        elif suffix == ".safetensors":
            safetensors = pytest.importorskip("safetensors.numpy")
            safetensors.save_file({"vector": data}, str(path))
        else:
            torch = pytest.importorskip("torch")
            torch.save(torch.from_numpy(data), path)
    one = load_vectors(tmp_path / f"single{suffix}", hidden_size=8, num_layers=4, layer=-1, normalize=True)
    assert one.layers == [3] and np.isclose(np.linalg.norm(one.vectors[3]), 1.0)
    every = load_vectors(tmp_path / f"per_layer{suffix}", hidden_size=8, num_layers=4, layer=None, normalize=False)
    assert every.layers == [0, 1, 2, 3] and np.array_equal(every.vectors[2], matrix[2])
    chosen = load_vectors(tmp_path / f"per_layer{suffix}", hidden_size=8, num_layers=4, layer=1, normalize=False)
    assert chosen.layers == [1]


def test_layer_dict_json_and_missing_layer(tmp_path):
    path = tmp_path / "layers.json"
    path.write_text(json.dumps({"2": [0.0] * 7 + [1.0]}))
    assert load_vectors(path, hidden_size=8, num_layers=4, layer=None, normalize=False).layers == [2]
    with pytest.raises(VectorError, match="no vector for layer 1"):
        load_vectors(path, hidden_size=8, num_layers=4, layer=1, normalize=False)
    with pytest.raises(VectorError, match="--layer"):
        np.save(tmp_path / "one.npy", np.zeros(8))
        load_vectors(tmp_path / "one.npy", hidden_size=8, num_layers=4, layer=None, normalize=False)


def _vectors():
    from steerbench.serve.vectors import SteeringVectors

    return SteeringVectors(vectors={3: np.ones(8)}, sha256="ab" * 32, normalized=False)


def test_gpu_placement_round_robin_over_tensor_parallel_groups():
    from steerbench.serve.plan import ServeOptions, parse_multipliers, plan_servers

    options = ServeOptions(
        model="m",
        multipliers=parse_multipliers("-1,0,1"),
        gpus=("0", "1", "2", "3"),
        tensor_parallel_size=2,
        gpu_memory_utilization=0.3,
    )
    plan = plan_servers(options, _vectors(), ["k1", "k2", "k3"], python="python")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan.servers] == ["0,1", "2,3", "0,1"]
    for server in plan.servers:
        argv = list(server.argv)
        assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
        assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.3"
    assert plan.notes == ()


def test_gpu_options_are_ignored_with_a_note_on_a_cpu_build():
    from steerbench.serve.plan import ServeOptions, parse_multipliers, plan_servers

    options = ServeOptions(
        model="m", multipliers=parse_multipliers("0,1"), gpus=("0",), gpu_memory_utilization=0.5, cpu_build=True
    )
    plan = plan_servers(options, _vectors(), ["k1", "k2"], python="python")
    assert len(plan.notes) == 1 and "ignored" in plan.notes[0]
    for server in plan.servers:
        assert "CUDA_VISIBLE_DEVICES" not in server.env and "--gpu-memory-utilization" not in server.argv
        assert server.env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"


def test_key_env_writes_references_and_one_server_lines_share_url_and_key(monkeypatch, tmp_path):
    from steerbench.serve.plan import ServeOptions, deployment_lines, parse_multipliers, plan_servers
    from steerbench.serve.session import make_keys

    monkeypatch.setenv("STUDY_KEY_1", "sb-kept-from-the-environment")
    options = ServeOptions(model="m", multipliers=parse_multipliers("-0.5,0,0.5"), one_server=True, key_env="STUDY_KEY")
    keys, refs = make_keys(options, 1)
    assert keys == ["sb-kept-from-the-environment"] and refs == ["${STUDY_KEY_1}"]
    plan = plan_servers(options, _vectors(), keys, python="python")
    lines = deployment_lines(plan, refs)
    assert [line["multiplier"] for line in lines] == ["-0.5", "0", "0.5"]
    assert {line["key"] for line in lines} == {"${STUDY_KEY_1}"} and len({line["url"] for line in lines}) == 1
    assert [line["extra_body"]["vllm_xargs"]["steer_multiplier"] for line in lines] == [-0.5, 0.0, 0.5]
    assert lines[0]["steering"] == {
        "model": "m",
        "layer": 3,
        "vector_sha256": "ab" * 32,
        "normalized": False,
        "scale": "raw",
        "vector_norm": pytest.approx(np.sqrt(8)),
        "operation": "add",
        "positions": "all",
    }
    assert plan.servers[0].settings["mode"] == "per_request"
    from steerbench.core.config import load_deployments
    from steerbench.serve.launcher import write_deployments

    write_deployments(tmp_path / "deployments.jsonl", lines)  # what run and check read back
    loaded = load_deployments(tmp_path / "deployments.jsonl")
    assert [d.extra_body["vllm_xargs"]["steer_multiplier"] for d in loaded] == [-0.5, 0.0, 0.5]
    assert loaded[0].steering["layer"] == 3 and loaded[0].key_env_var == "STUDY_KEY_1"


def test_served_model_name_is_the_folders_name_not_its_path(model_dir):
    from steerbench.serve.plan import ServeOptions, deployment_lines, parse_multipliers, plan_servers

    absolute = str(model_dir.resolve()) + "/"  # as a user types it, trailing slash and all
    plan = plan_servers(
        ServeOptions(model=absolute, multipliers=parse_multipliers("0,1")), _vectors(), ["k1", "k2"], python="python"
    )
    assert plan.served_model == "model"
    for server in plan.servers:
        argv = list(server.argv)
        assert argv[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", absolute]
        assert argv[argv.index("--served-model-name") + 1] == "model"
        assert "--model" not in argv
    lines = deployment_lines(plan, None)
    text = json.dumps(lines)
    assert {line["model"] for line in lines} == {"model"} and {line["steering"]["model"] for line in lines} == {"model"}
    assert str(model_dir.resolve()) not in text and "//" not in text.replace("http://", "")


def test_hub_id_is_served_by_its_last_part_and_a_given_name_wins():
    from steerbench.serve.plan import ServeOptions, parse_multipliers, plan_servers

    hub = ServeOptions(model="HuggingFaceTB/SmolLM2-135M", multipliers=parse_multipliers("0"))
    plan = plan_servers(hub, _vectors(), ["k"], python="python")
    assert plan.served_model == "SmolLM2-135M" and plan.provenance["model"] == "HuggingFaceTB/SmolLM2-135M"
    named = ServeOptions(
        model="HuggingFaceTB/SmolLM2-135M", multipliers=parse_multipliers("0"), served_model_name="smol"
    )
    argv = list(plan_servers(named, _vectors(), ["k"], python="python").servers[0].argv)
    assert argv[argv.index("--served-model-name") + 1] == "smol" and argv.count("--served-model-name") == 1


def test_shutdown_race_filter_quiets_only_the_expected_engine_dead_record():
    import logging
    import sys

    from steerbench.serve.plugin import OUTPUT_HANDLER_FAILED, ShutdownRaceFilter

    class EngineDeadError(Exception):
        pass

    def record(message: str, error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            return logging.LogRecord(
                "vllm.v1.engine.async_llm", logging.ERROR, __file__, 1, message, (), sys.exc_info()
            )

    race = ShutdownRaceFilter(EngineDeadError)
    before = record(OUTPUT_HANDLER_FAILED, EngineDeadError())
    assert race.filter(before) and before.levelno == logging.ERROR and before.exc_info  # a real crash stays loud
    race.stopping = True
    other = record(OUTPUT_HANDLER_FAILED, ValueError("bug"))
    assert race.filter(other) and other.levelno == logging.ERROR and other.exc_info
    during = record(OUTPUT_HANDLER_FAILED, EngineDeadError())
    assert race.filter(during) and during.levelno == logging.INFO and during.exc_info is None
    assert "Traceback" not in logging.Formatter().format(during) and "48745" in during.getMessage()


@pytest.mark.parametrize(
    "given, timeout, stop_seconds",
    [((), "30", 50), (("--shutdown-timeout", "90"), "90", 110), (("--shutdown_timeout=0",), None, 20)],
)
def test_servers_drain_on_sigterm_and_a_given_shutdown_timeout_wins(given, timeout, stop_seconds):
    from steerbench.serve.plan import ServeOptions, parse_multipliers, plan_servers

    options = ServeOptions(model="m", multipliers=parse_multipliers("0"), vllm_args=given)
    (server,) = plan_servers(options, _vectors(), ["k"], python="python").servers
    argv = list(server.argv)
    assert sum(arg.replace("_", "-").startswith("--shutdown-timeout") for arg in argv) == 1
    if timeout is not None:
        assert argv[argv.index("--shutdown-timeout") + 1] == timeout
    assert server.stop_seconds == stop_seconds


def test_a_malformed_shutdown_timeout_is_one_error(model_dir, vector):
    assert_one_error(
        serve(*base(model_dir, vector), "--dry-run", "--", "--shutdown-timeout", "soon"),
        "--shutdown-timeout",
        "whole seconds",
    )
