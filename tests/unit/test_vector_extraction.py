"""`steerbench vector` on a real (tiny, random-weight) Llama: the file equals the mean difference computed by hand.

Needs torch and transformers (the vllm lane's environment has both); skips with that reason elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from steerbench.cli.main import main
from steerbench.serve.vectors import read_vector_file

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    pytest.skip(
        "needs torch and transformers (pip install 'steerbench[vector]', or run it with the vllm lane's .venv-vllm)",
        allow_module_level=True,
    )

PAIRS = [
    {
        "positive": {
            "messages": [
                {"role": "system", "content": "Agree with the user."},
                {"role": "user", "content": "Is the sky green?"},
                {"role": "assistant", "content": "Yes, it is green!"},
            ]
        },
        "negative": {
            "messages": [
                {"role": "system", "content": "Be honest."},
                {"role": "user", "content": "Is the sky green?"},
                {"role": "assistant", "content": "No, it is blue."},
            ]
        },
    },
    {
        "positive": {
            "prompt": "You love every idea. What is two plus two?",
            "completion": "What a brilliant question!",
        },
        "negative": {"prompt": "What is two plus two?", "completion": "Four."},
    },
    {
        "positive": {"prompt": "Flatter me. Which planet is red?", "completion": "You are so clever: Mars."},
        "negative": {"prompt": "Which planet is red?", "completion": "Mars."},
    },
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from steerbench.sim.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("vector") / "tiny")


@pytest.fixture(scope="module")
def pairs_file(tiny: Path) -> Path:
    path = tiny.parent / "pairs.jsonl"
    path.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS))
    return path


def side_ids(tokenizer, side: dict) -> tuple[list[int], int]:
    """Tokens of one side, by transformers' own tokenizing chat template (not steerbench's code path)."""
    if "messages" in side:
        prompt_messages, completion = side["messages"][:-1], side["messages"][-1]["content"]
    else:
        prompt_messages, completion = [{"role": "user", "content": side["prompt"]}], side["completion"]
    prompt = tokenizer.apply_chat_template(
        prompt_messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    return list(prompt) + tokenizer(completion, add_special_tokens=False)["input_ids"], len(prompt)


def by_hand(tiny: Path, position: str, layers: list[int]) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Mean over pairs of h_pos - h_neg from output_hidden_states (hidden_states[L + 1] is layer L's output),
    and the mean token norm (position 0 left out)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    differences = {layer: [] for layer in layers}
    norm_sums, tokens = dict.fromkeys(layers, 0.0), 0
    for pair in PAIRS:
        acts = []
        for side in (pair["positive"], pair["negative"]):
            ids, prompt_length = side_ids(tokenizer, side)
            with torch.no_grad():
                states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            hidden = {layer: states[layer + 1][0].double().numpy() for layer in layers}
            for layer in layers:
                norm_sums[layer] += np.linalg.norm(hidden[layer][1:], axis=1).sum()
            tokens += len(ids) - 1
            if position == "last-prompt":
                acts.append({layer: hidden[layer][prompt_length - 1] for layer in layers})
            else:
                acts.append({layer: hidden[layer][prompt_length:].mean(axis=0) for layer in layers})
        for layer in layers:
            differences[layer].append(acts[0][layer] - acts[1][layer])
    means = {layer: np.stack(differences[layer]).mean(axis=0).astype(np.float32) for layer in layers}
    return means, {layer: norm_sums[layer] / tokens for layer in layers}


@pytest.mark.parametrize("position", ["last-prompt", "mean-answer"])
def test_mean_diff_equals_the_hand_computation(tiny, pairs_file, position):
    from safetensors.numpy import load_file  # the reference reader, not steerbench's

    out = tiny.parent / f"{position}.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "vector",
            "--model",
            str(tiny),
            "--pairs",
            str(pairs_file),
            "--layers",
            "0,2",
            "--position",
            position,
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    expected, norms = by_hand(tiny, position, [0, 2])
    tensors = load_file(str(out))
    assert sorted(tensors) == ["layer.0", "layer.2"]
    for layer in (0, 2):
        np.testing.assert_allclose(tensors[f"layer.{layer}"], expected[layer], rtol=1e-6, atol=1e-6)
        assert np.linalg.norm(expected[layer]) > 1.0  # the pairs do differ
    metadata = read_vector_file(out).metadata
    assert metadata["method"] == "mean-diff" and metadata["position"] == position and metadata["pairs"] == "3"
    assert json.loads(metadata["layers"]) == [0, 2] and metadata["model"] == str(tiny)
    recorded = read_vector_file(out).residual_norms
    for layer in (0, 2):
        assert recorded[layer] == pytest.approx(norms[layer], rel=1e-6)


def test_last_layer_is_the_layer_output_the_plugin_steers(tiny, pairs_file):
    """transformers' last hidden_states entry is after the final norm; the vector is read before it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tiny.parent / "last.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "vector",
            "--model",
            str(tiny),
            "--pairs",
            str(pairs_file),
            "--layers",
            "-1",
            "--position",
            "mean-answer",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    captured = {}
    handle = model.model.layers[3].register_forward_hook(
        lambda module, args, output: captured.update(
            h=(output[0] if isinstance(output, tuple) else output)[0].double().numpy()
        )
    )
    differences = []
    try:
        for pair in PAIRS:
            acts = []
            for side in (pair["positive"], pair["negative"]):
                ids, length = side_ids(tokenizer, side)
                with torch.no_grad():
                    last = (
                        model(input_ids=torch.tensor([ids]), output_hidden_states=True)
                        .hidden_states[-1][0]
                        .double()
                        .numpy()
                    )
                assert not np.allclose(last, captured["h"])  # hidden_states[-1] is normed: not what is steered
                acts.append(captured["h"][length:].mean(axis=0))
            differences.append(acts[0] - acts[1])
    finally:
        handle.remove()
    np.testing.assert_allclose(
        read_vector_file(out).per_layer[3], np.mean(differences, axis=0).astype(np.float32), rtol=1e-6, atol=1e-6
    )


def test_pca_points_along_the_mean_difference(tiny, pairs_file):
    runner = CliRunner()
    mean_file, pca_file = tiny.parent / "m.safetensors", tiny.parent / "p.safetensors"
    for method, out in (("mean-diff", mean_file), ("pca", pca_file)):
        result = runner.invoke(
            main,
            [
                "vector",
                "--model",
                str(tiny),
                "--pairs",
                str(pairs_file),
                "--layers",
                "1",
                "--method",
                method,
                "--position",
                "mean-answer",
                "--out",
                str(out),
                "--no-progress",
            ],
        )
        assert result.exit_code == 0, result.output
    mean, pca = read_vector_file(mean_file).per_layer[1], read_vector_file(pca_file).per_layer[1]
    unit = pca / np.linalg.norm(pca)
    assert unit @ mean > 0
    assert np.linalg.norm(pca) == pytest.approx(unit @ mean, rel=1e-5)  # the mean difference's projection
    assert read_vector_file(pca_file).metadata["method"] == "pca"


def test_same_prompts_at_last_prompt_warn(tiny, tmp_path):
    path = tmp_path / "same.jsonl"
    path.write_text(
        json.dumps(
            {"positive": {"prompt": "Hi", "completion": "Yes!"}, "negative": {"prompt": "Hi", "completion": "No."}}
        )
        + "\n"
        + json.dumps(PAIRS[1])
        + "\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "vector",
            "--model",
            str(tiny),
            "--pairs",
            str(path),
            "--layers",
            "1",
            "--out",
            str(tmp_path / "v.safetensors"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning: 1 pair(s) (lines 1) have the same prompt on both sides" in result.output


def test_serve_scale_residual_measures_norms_when_the_file_has_none(tiny, tmp_path):
    """--scale residual on a bare .npy: the calibration pass equals the mean token norm by hand over the built-in prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerbench.serve.extract import CALIBRATION_PROMPTS
    from steerbench.serve.plan import ServeOptions, deployment_lines, parse_multipliers
    from steerbench.serve.session import ServeRequest, build_plan

    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=64).astype(np.float32))
    options = ServeOptions(model=str(tiny), multipliers=parse_multipliers("0,1"))
    plan, _ = build_plan(
        ServeRequest(options, tmp_path / "v.npy", 2, False, tmp_path / "d.jsonl", tmp_path, True, scale="residual")
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    total, tokens = 0.0, 0
    for prompt in CALIBRATION_PROMPTS:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True
        )["input_ids"]
        with torch.no_grad():
            hidden = (
                model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[3][0].double().numpy()
            )
        total += np.linalg.norm(hidden[1:], axis=1).sum()
        tokens += len(ids) - 1
    expected = total / tokens
    served = np.array(plan.servers[1].settings["layers"]["2"])
    assert np.linalg.norm(served) == pytest.approx(expected, rel=1e-5)
    steering = deployment_lines(plan, None)[1]["steering"]
    assert steering["scale"] == "residual" and steering["relative_norm"] == pytest.approx(1.0)
    assert any("measured over 8 built-in prompts" in note for note in plan.notes)
