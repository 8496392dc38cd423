"""`steerbench vector` without torch: pairs checking, layer checking, the combining maths, random controls, info, file format."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from steerbench.cli.main import main
from steerbench.serve.extract import principal_direction, random_like
from steerbench.serve.pairs import PairsError, read_pairs
from steerbench.serve.vectors import load_vectors, read_safetensors, read_vector_file, write_safetensors

HAVE_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
CHAT = {"messages": [{"role": "user", "content": "Is the sky green?"}, {"role": "assistant", "content": "Yes!"}]}
HONEST = {"messages": [{"role": "user", "content": "Is the sky green?"}, {"role": "assistant", "content": "No."}]}
PROMPT = {"prompt": "What is 2+2?", "completion": "Four."}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4}))
    return folder


def write_pairs(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def vector(*args: str):
    return CliRunner().invoke(main, ["vector", *args])


def assert_one_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- pairs


def test_both_side_forms_are_read(tmp_path):
    path = write_pairs(
        tmp_path / "p.jsonl",
        {"positive": CHAT, "negative": HONEST, "id": 7},
        "",
        {"positive": PROMPT, "negative": {"prompt": "What is 2+2?", "completion": "5"}},
    )
    pairs = read_pairs(path, "mean-answer")
    assert [pair.line for pair in pairs.pairs] == [1, 3]
    first, second = pairs.pairs
    assert first.positive.completion == "Yes!" and [m.role for m in first.positive.prompt] == ["user"]
    assert second.positive.plain_prompt == "What is 2+2?" and second.negative.completion == "5"
    assert pairs.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("line", "position", "needle"),
    [
        ("{not json", "last-prompt", "line 2: not valid JSON"),
        ({"positive": CHAT}, "last-prompt", "line 2: negative is missing"),
        (
            {"positive": CHAT, "negative": {"messages": [{"role": "user", "content": " "}]}},
            "last-prompt",
            "line 2: negative.messages[0].content is empty",
        ),
        ({"positive": CHAT, "negative": {"messages": []}}, "last-prompt", "negative.messages must be a non-empty list"),
        (
            {"positive": CHAT, "negative": {"messages": [{"role": "user", "text": "hi"}]}},
            "last-prompt",
            "unknown field 'text'",
        ),
        (
            {"positive": {"prompt": "q", "competion": "a"}, "negative": PROMPT},
            "last-prompt",
            "positive has unknown field 'competion'",
        ),
        ({"positive": {"prompt": "q"}, "negative": PROMPT}, "mean-answer", "positive.completion must be a string"),
        (
            {"positive": {"messages": [{"role": "user", "content": "q"}]}, "negative": HONEST},
            "mean-answer",
            "positive.messages must end with an assistant message",
        ),
        ({"positive": PROMPT, "negative": PROMPT}, "last-prompt", "line 2: positive and negative are identical"),
        ([1, 2], "last-prompt", "expected a JSON object"),
        ({"positive": {"prompt": 3}, "negative": PROMPT}, "last-prompt", "positive.prompt must be a string"),
    ],
)
def test_bad_pairs_name_file_line_and_field(tmp_path, line, position, needle):
    path = write_pairs(tmp_path / "p.jsonl", {"positive": CHAT, "negative": HONEST}, line)
    with pytest.raises(PairsError) as caught:
        read_pairs(path, position)
    assert str(caught.value).startswith(f"{path}, line 2: ")
    assert needle in str(caught.value)


def test_empty_pairs_file(tmp_path):
    with pytest.raises(PairsError, match="no pairs"):
        read_pairs(write_pairs(tmp_path / "p.jsonl", ""), "last-prompt")


def test_bad_pairs_stop_the_command_before_the_model_and_write_nothing(tmp_path):
    pairs = write_pairs(tmp_path / "p.jsonl", {"positive": CHAT, "negative": {"prompt": ""}})
    out = tmp_path / "v.safetensors"
    # The model folder does not exist either: the pairs file is checked first.
    result = vector("--model", str(tmp_path / "nowhere"), "--pairs", str(pairs), "--layers", "1", "--out", str(out))
    assert_one_error(result, str(pairs), "line 1", "negative.prompt is empty")
    assert not out.exists() and list(tmp_path.iterdir()) == [pairs]


def test_missing_pairs_file(tmp_path, model_dir):
    assert_one_error(
        vector("--model", str(model_dir), "--pairs", str(tmp_path / "none.jsonl"), "--layers", "1"),
        "--pairs",
        "cannot read",
    )


def test_one_layer_named_twice(tmp_path, model_dir):
    pairs = write_pairs(tmp_path / "p.jsonl", {"positive": CHAT, "negative": HONEST})
    assert_one_error(
        vector("--model", str(model_dir), "--pairs", str(pairs), "--layers", "3,-1"), "--layers 3,-1", "twice"
    )
    assert_one_error(vector("--model", str(model_dir), "--pairs", str(pairs), "--layers", "1,x"), "--layers")


@pytest.mark.parametrize("layers", ["4", "-5", "1,9"])
def test_layer_out_of_range_names_the_layer_count(tmp_path, model_dir, layers):
    pairs = write_pairs(tmp_path / "p.jsonl", {"positive": CHAT, "negative": HONEST})
    result = vector(
        "--model", str(model_dir), "--pairs", str(pairs), "--layers", layers, "--out", str(tmp_path / "v.safetensors")
    )
    assert_one_error(result, "--layers", "the model has 4 decoder layers")
    assert not (tmp_path / "v.safetensors").exists()


def test_make_is_the_default_subcommand_and_out_must_be_safetensors(tmp_path, model_dir):
    pairs = write_pairs(tmp_path / "p.jsonl", {"positive": CHAT, "negative": HONEST})
    for prefix in ([], ["make"]):
        result = vector(
            *prefix, "--model", str(model_dir), "--pairs", str(pairs), "--layers", "1", "--out", str(tmp_path / "v.npy")
        )
        assert_one_error(result, "--out", ".safetensors")
    assert "make" in vector("--help").output and "random" in vector("--help").output


@pytest.mark.skipif(
    HAVE_TORCH, reason="torch and transformers are installed here: the missing-package error cannot happen"
)
def test_without_torch_one_error_names_the_extra(tmp_path, model_dir):
    pairs = write_pairs(tmp_path / "p.jsonl", {"positive": CHAT, "negative": HONEST})
    result = vector(
        "--model", str(model_dir), "--pairs", str(pairs), "--layers", "1", "--out", str(tmp_path / "v.safetensors")
    )
    assert_one_error(result, "needs torch and transformers", "steerbench[vector]")
    assert not (tmp_path / "v.safetensors").exists()


# ---------------------------------------------------------------- maths


def test_principal_direction_is_signed_and_scaled_by_the_projected_mean():
    rng = np.random.default_rng(0)
    axis = np.zeros(16)
    axis[3] = 1.0
    differences = rng.normal(2.0, 0.3, size=(40, 1)) * axis + rng.normal(0, 0.1, size=(40, 16))
    for sign in (1, -1):
        found = principal_direction(sign * differences)
        mean = (sign * differences).mean(axis=0)
        unit = found / np.linalg.norm(found)
        assert abs(unit[3]) > 0.99 and found @ mean > 0
        assert np.isclose(np.linalg.norm(found), unit @ mean)
        top = np.linalg.eigh((sign * differences).T @ (sign * differences))[1][:, -1]
        assert np.isclose(abs(unit @ top), 1.0)


def test_random_like_keeps_norms_and_is_seeded():
    source = {2: np.arange(8.0), 0: np.ones(8) * 3}
    first, again, other = random_like(source, 0), random_like(source, 0), random_like(source, 1)
    for layer in source:
        assert np.isclose(np.linalg.norm(first[layer]), np.linalg.norm(source[layer]))
        assert np.array_equal(first[layer], again[layer]) and not np.allclose(first[layer], other[layer])
    assert abs(first[2] @ source[2]) / np.linalg.norm(source[2]) ** 2 < 0.99  # not the source direction


# ---------------------------------------------------------------- files, random, info, serve


def made_vector(tmp_path: Path) -> Path:
    """A file as `steerbench vector` writes it (two layers, residual norms in the metadata)."""
    path = tmp_path / "made.safetensors"
    write_safetensors(
        path,
        {"layer.1": np.arange(8, dtype=np.float32), "layer.3": np.ones(8, dtype=np.float32)},
        {"format": "steerbench-vector/1", "model": "m", "residual_norms": json.dumps({"1": 20.0, "3": 40.0})},
    )
    return path


def test_safetensors_round_trip_and_layout(tmp_path):
    path = made_vector(tmp_path)
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    assert header_length % 8 == 0 and json.loads(data[8 : 8 + header_length])["layer.3"]["dtype"] == "F32"
    tensors, metadata = read_safetensors(path)
    assert np.array_equal(tensors["layer.1"], np.arange(8)) and metadata["model"] == "m"
    loaded = read_vector_file(path)
    assert loaded.per_layer is not None and sorted(loaded.per_layer) == [1, 3]
    assert loaded.residual_norms == {1: 20.0, 3: 40.0}


def test_a_one_layer_file_needs_no_layer_flag(tmp_path):
    path = tmp_path / "one.safetensors"
    write_safetensors(path, {"layer.2": np.ones(8, dtype=np.float32)}, {})
    assert load_vectors(path, hidden_size=8, num_layers=4, layer=None, normalize=False).layers == [2]


def test_random_control_from_the_command(tmp_path):
    source = made_vector(tmp_path)
    out = tmp_path / "random.safetensors"
    result = vector("random", "--like", str(source), "--seed", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    made = read_vector_file(out)
    assert made.metadata["method"] == "random" and made.metadata["seed"] == "5"
    assert made.metadata["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert made.residual_norms == {1: 20.0, 3: 40.0}
    for layer, original in read_vector_file(source).per_layer.items():
        assert np.isclose(np.linalg.norm(made.per_layer[layer]), np.linalg.norm(original), rtol=1e-6)
    again = tmp_path / "again.safetensors"
    vector("random", "--like", str(source), "--seed", "5", "--out", str(again))
    assert again.read_bytes() == out.read_bytes()


def test_random_needs_layers(tmp_path):
    np.save(tmp_path / "one.npy", np.ones(8))
    assert_one_error(
        vector("random", "--like", str(tmp_path / "one.npy"), "--out", str(tmp_path / "r.safetensors")),
        "holds one vector without a layer",
    )
    assert not (tmp_path / "r.safetensors").exists()


def test_info_text_and_json(tmp_path):
    path = made_vector(tmp_path)
    result = vector("info", str(path))
    assert result.exit_code == 0, result.output
    assert "layer 3: size 8, norm 2.828, residual norm 40 (ratio 0.0707)" in result.output
    assert "model: m" in result.output
    summary = json.loads(vector("info", "--json", str(path)).output)
    assert summary["format"] == "safetensors" and [row["layer"] for row in summary["layers"]] == [1, 3]
    np.save(tmp_path / "plain.npy", np.ones(8))
    plain = vector("info", str(tmp_path / "plain.npy"))
    assert "one vector (no layer" in plain.output and "residual norms: not recorded" in plain.output
    assert_one_error(vector("info", str(tmp_path / "nothing.npy")), "not found")
