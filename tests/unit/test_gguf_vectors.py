"""GGUF control vectors (repeng / llama.cpp) read with numpy alone: layers, checks, and the model_hint warning."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from steerbench.cli.main import main
from steerbench.serve.vectors import VectorError, load_vectors, read_vector_file


def write_gguf(path: Path, metadata: dict[str, str | int], tensors: dict[str, np.ndarray], alignment: int = 32) -> Path:
    """A GGUF v3 file as gguf.GGUFWriter lays it out (string and uint32 metadata, F32 tensors)."""

    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, value in metadata.items():
        head += string(key) + (
            struct.pack("<I", 8) + string(value) if isinstance(value, str) else struct.pack("<II", 4, value)
        )
    blobs, offset = b"", 0
    for name, tensor in tensors.items():
        head += (
            string(name)
            + struct.pack("<I", tensor.ndim)
            + b"".join(struct.pack("<Q", d) for d in reversed(tensor.shape))
        )
        head += struct.pack("<IQ", 0, offset)
        blob = tensor.astype("<f4").tobytes()
        blob += b"\0" * (-len(blob) % alignment)
        blobs += blob
        offset += len(blob)
    head += b"\0" * (-len(head) % alignment)
    path.write_bytes(head + blobs)
    return path


def control_vector(path: Path, hint: str = "llama", layers=(1, 2), architecture: str = "controlvector") -> Path:
    return write_gguf(
        path,
        {
            "general.architecture": architecture,
            "controlvector.model_hint": hint,
            "controlvector.layer_count": len(layers),
        },
        {f"direction.{layer}": np.arange(8, dtype=np.float32) * layer for layer in layers},
    )


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4, "model_type": "llama"}))
    return folder


def test_direction_n_is_layer_n(tmp_path):
    read = read_vector_file(control_vector(tmp_path / "v.gguf"))
    assert read.format.startswith("gguf control vector") and sorted(read.per_layer) == [1, 2]
    assert np.array_equal(read.per_layer[2], np.arange(8) * 2.0)
    assert read.metadata["controlvector.model_hint"] == "llama" and read.warnings == ()


def test_not_a_control_vector(tmp_path):
    with pytest.raises(VectorError, match=r"general\.architecture is 'llama': not a control vector"):
        read_vector_file(control_vector(tmp_path / "model.gguf", architecture="llama"))
    write_gguf(
        tmp_path / "odd.gguf", {"general.architecture": "controlvector"}, {"token_embd.weight": np.ones(8, np.float32)}
    )
    with pytest.raises(VectorError, match=r"'token_embd\.weight' is not a control vector direction"):
        read_vector_file(tmp_path / "odd.gguf")
    (tmp_path / "text.gguf").write_text("hello")
    with pytest.raises(VectorError, match="not a GGUF file"):
        read_vector_file(tmp_path / "text.gguf")


def test_model_hint_of_another_architecture_warns(tmp_path, model_dir):
    path = control_vector(tmp_path / "v.gguf", hint="qwen2")
    vectors = load_vectors(path, hidden_size=8, num_layers=4, layer=None, normalize=False, model_type="llama")
    assert len(vectors.warnings) == 1 and "made for a 'qwen2' model" in vectors.warnings[0]
    result = CliRunner().invoke(
        main, ["serve", "--model", str(model_dir), "--vector", str(path), "--multipliers", "0,1", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "'qwen2'" in result.output and "'llama'" in result.output


def test_layers_that_do_not_fit_the_model(tmp_path, model_dir):
    path = control_vector(tmp_path / "v.gguf", layers=(1, 7))
    result = CliRunner().invoke(
        main, ["serve", "--model", str(model_dir), "--vector", str(path), "--multipliers", "0,1", "--dry-run"]
    )
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: {path}: layer 7 is out of range: the model has 4 decoder layers (0..3, or -4..-1)"
    )


def test_unknown_format(tmp_path, model_dir):
    (tmp_path / "v.bin").write_bytes(b"\0" * 32)
    result = CliRunner().invoke(main, ["vector", "info", str(tmp_path / "v.bin")])
    assert result.exit_code == 2 and "unknown vector format '.bin'" in result.output and ".gguf" in result.output


def test_info_on_a_control_vector(tmp_path):
    result = CliRunner().invoke(main, ["vector", "info", str(control_vector(tmp_path / "v.gguf"))])
    assert result.exit_code == 0, result.output
    assert "gguf control vector (repeng / llama.cpp)" in result.output and "layer 2: size 8" in result.output
    assert "controlvector.model_hint: llama" in result.output
