"""Vectors saved by repeng, steering-vectors and lm-eval: steerbench's reading steers exactly as the library does.

Each proof makes a vector with the real library on the tiny Llama, then checks that the library's own
steered greedy generation equals transformers' generate with steerbench's forward hook (add m × v
after decoder layer L, as the vLLM plugin does) using the vectors steerbench read from the file.
The proofs skip where the library is not installed (install them into a separate environment: they
pin older numpy/transformers); the bad-input tests need torch alone.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from steerbench.serve.vectors import VectorError, load_vectors, read_vector_file

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    pytest.skip("needs torch and transformers (the vllm lane's .venv-vllm has both)", allow_module_level=True)

import torch  # noqa: E402

PROMPT = "What is two plus two?"
NEW_TOKENS = 10
DATASET = [
    ("I love this, it is wonderful!", "I hate this, it is awful."),
    ("What a great and happy day.", "What a terrible and sad day."),
    ("You are brilliant and kind.", "You are stupid and cruel."),
    ("Everything is going perfectly.", "Everything is going wrong."),
    ("I feel joyful and calm.", "I feel miserable and angry."),
    ("This is the best news ever.", "This is the worst news ever."),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from steerbench.sim.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("library") / "tiny")


def load(tiny: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval(), tokenizer


def prompt_ids(tokenizer) -> torch.Tensor:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]


def greedy(model, tokenizer) -> list[int]:
    ids = prompt_ids(tokenizer)
    with torch.no_grad():
        out = model.generate(
            ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id, eos_token_id=None
        )
    return out[0, ids.shape[1] :].tolist()


def steerbench_reference(tiny: Path, vector_file: Path, multiplier: float) -> tuple[list[int], list[int]]:
    """(steered, unsteered) greedy tokens: a forward hook adding multiplier × v after each layer steerbench read."""
    model, tokenizer = load(tiny)
    config = json.loads((tiny / "config.json").read_text())
    vectors = load_vectors(
        vector_file,
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        layer=None,
        normalize=False,
        model_type=config["model_type"],
    )
    assert vectors.warnings == ()
    unsteered = greedy(model, tokenizer)
    handles = []
    for layer, vector in vectors.vectors.items():
        delta = multiplier * torch.tensor(vector, dtype=torch.float32)
        handles.append(
            model.model.layers[layer].register_forward_hook(
                lambda module, args, output, delta=delta: (
                    (output[0] + delta, *output[1:]) if isinstance(output, tuple) else output + delta
                )
            )
        )
    try:
        return greedy(model, tokenizer), unsteered
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------- the real libraries


def test_repeng_gguf_steers_as_repeng_does(tiny, tmp_path):
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # repeng 0.4.0 names an alias NumPy 2 removed; nothing else changes
    repeng = pytest.importorskip("repeng", reason="repeng is not installed here")
    model, tokenizer = load(tiny)
    dataset = [repeng.DatasetEntry(positive=p, negative=n) for p, n in DATASET]
    vector = repeng.ControlVector.train(model, tokenizer, dataset, hidden_layers=[1, 2], batch_size=8)
    path = tmp_path / "repeng.gguf"
    vector.export_gguf(str(path))

    read = read_vector_file(path)
    assert sorted(read.per_layer) == [1, 2] and read.metadata["controlvector.model_hint"] == "llama"
    for layer in (1, 2):
        np.testing.assert_array_equal(read.per_layer[layer], vector.directions[layer].astype(np.float64))
    gguf = pytest.importorskip("gguf")
    for tensor in gguf.GGUFReader(str(path)).tensors:  # the gguf package's own reader agrees
        np.testing.assert_array_equal(
            read.per_layer[int(tensor.name.split(".")[1])], np.asarray(tensor.data, dtype=np.float64)
        )

    coefficient = 8.0  # the directions are unit vectors: a strength that changes the tiny model's output
    controlled = repeng.ControlModel(model, [1, 2])
    controlled.set_control(vector, coeff=coefficient)
    library_tokens = greedy(controlled, tokenizer)
    reference, unsteered = steerbench_reference(tiny, path, coefficient)
    assert library_tokens == reference and reference != unsteered


def test_steering_vectors_object_steers_as_the_library_does(tiny, tmp_path):
    library = pytest.importorskip("steering_vectors", reason="steering-vectors is not installed here")
    model, tokenizer = load(tiny)
    vector = library.train_steering_vector(model, tokenizer, DATASET, layers=[0, 2], read_token_index=-1)
    path = tmp_path / "steering_vector.pt"
    torch.save(vector, path)

    read = read_vector_file(path)
    assert read.format.startswith("steering-vectors") and sorted(read.per_layer) == [0, 2]
    for layer in (0, 2):
        np.testing.assert_array_equal(read.per_layer[layer], vector.layer_activations[layer].double().numpy())

    with vector.apply(model, multiplier=3.0):
        library_tokens = greedy(model, tokenizer)
    reference, unsteered = steerbench_reference(tiny, path, 3.0)
    assert library_tokens == reference and reference != unsteered


def test_lm_eval_steered_file_steers_as_lm_eval_does(tiny, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is not installed here")
    from lm_eval.models.hf_steered import SteeredModel

    rng = np.random.default_rng(0)
    path = tmp_path / "steer.pt"
    torch.save(
        {
            "layers.1": {
                "steering_vector": torch.tensor(rng.normal(size=64), dtype=torch.float32),
                "steering_coefficient": 4.0,
                "action": "add",
                "bias": None,
                "head_index": None,
            },
            "layers.3": {
                "steering_vector": torch.tensor(rng.normal(size=64), dtype=torch.float32),
                "steering_coefficient": -2.0,
                "action": "add",
            },
        },
        path,
    )
    read = read_vector_file(path)
    assert read.format == "lm-eval steered (.pt)" and sorted(read.per_layer) == [1, 3]

    steered = SteeredModel(pretrained=str(tiny), steer_path=str(path), device="cpu", dtype="float32")
    _, tokenizer = load(tiny)
    ids = prompt_ids(tokenizer)
    out = steered._model_generate(ids, max_length=ids.shape[1] + NEW_TOKENS, stop=[], do_sample=False)
    library_tokens = out[0, ids.shape[1] :].tolist()
    reference, unsteered = steerbench_reference(tiny, path, 1.0)  # the coefficient is folded into the vectors
    assert library_tokens == reference and reference != unsteered


# ---------------------------------------------------------------- bad input (torch alone)


@dataclass
class FakeSteeringVector:
    """Pickled under steering_vectors.steering_vector.SteeringVector, as the library's dataclass is."""

    layer_activations: dict
    layer_type: str = "decoder_block"


def save_as_steering_vectors(path: Path, value: FakeSteeringVector) -> None:
    module = types.ModuleType("steering_vectors.steering_vector")
    FakeSteeringVector.__module__, FakeSteeringVector.__qualname__ = module.__name__, "SteeringVector"
    module.SteeringVector = FakeSteeringVector
    saved = {name: sys.modules.get(name) for name in ("steering_vectors", "steering_vectors.steering_vector")}
    sys.modules.setdefault("steering_vectors", types.ModuleType("steering_vectors"))
    sys.modules["steering_vectors.steering_vector"] = module
    try:
        torch.save(value, path)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def test_steering_vectors_file_is_read_without_the_library(tmp_path):
    path = tmp_path / "sv.pt"
    save_as_steering_vectors(path, FakeSteeringVector({-1: torch.ones(8), 1: torch.arange(8.0)}))
    vectors = load_vectors(path, hidden_size=8, num_layers=4, layer=None, normalize=False)
    assert vectors.layers == [1, 3] and np.array_equal(vectors.vectors[1], np.arange(8.0))
    save_as_steering_vectors(path, FakeSteeringVector({1: torch.ones(8)}, layer_type="mlp"))
    with pytest.raises(VectorError, match="layer_type 'mlp'"):
        read_vector_file(path)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (
            {"layers.1": {"steering_vector": torch.ones(8), "steering_coefficient": 2.0, "action": "clamp"}},
            "action 'clamp'",
        ),
        ({"layers.1": {"steering_vector": torch.ones(8), "action": "add", "head_index": 3}}, "one attention head"),
        (
            {"layers.1.mlp": {"steering_vector": torch.ones(8), "action": "add"}},
            "'layers.1.mlp' is not a decoder layer's output",
        ),
        ({"layers.1": {"steering_vector": torch.ones(8), "action": "scale"}}, "action 'scale'"),
    ],
)
def test_lm_eval_files_steerbench_cannot_serve(tmp_path, config, needle):
    path = tmp_path / "steer.pt"
    torch.save(config, path)
    with pytest.raises(VectorError, match=needle) as caught:
        read_vector_file(path)
    assert str(caught.value).startswith(str(path))


def test_lm_eval_coefficient_is_folded_in(tmp_path):
    path = tmp_path / "steer.pt"
    torch.save(
        {"layers.2": {"steering_vector": torch.arange(8.0), "steering_coefficient": -1.5, "action": "add"}}, path
    )
    vectors = load_vectors(path, hidden_size=8, num_layers=4, layer=None, normalize=False)
    assert vectors.layers == [2] and np.array_equal(vectors.vectors[2], -1.5 * np.arange(8.0))


def test_an_arbitrary_pickle_is_refused(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"layer": types.SimpleNamespace(x=1)}, path)
    with pytest.raises(VectorError, match="safe loader"):
        read_vector_file(path)
