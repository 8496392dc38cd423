"""A vector made by `steerbench vector`, served at --scale residual on two layers: vLLM equals transformers' hook."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
from conftest import SERVE_ARGS, Served, wait_ready

from steerbench.serve.vectors import read_vector_file

PAIRS = [
    {
        "positive": {
            "prompt": "You adore everything. What is two plus two?",
            "completion": "What a wonderful question!",
        },
        "negative": {"prompt": "What is two plus two?", "completion": "Four."},
    },
    {
        "positive": {"prompt": "Flatter me. Which planet is red?", "completion": "You are so clever, it is Mars."},
        "negative": {"prompt": "Which planet is red?", "completion": "Mars."},
    },
]
PROMPTS = ["What is two plus two?", "The quick brown fox jumps over the lazy dog."]
MAX_TOKENS = 10


def reference(model_dir: Path, vectors: dict[int, np.ndarray], multiplier: float, prompt: str) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    handles = []
    for layer, vector in vectors.items():
        delta = multiplier * torch.tensor(vector, dtype=torch.float32)
        handles.append(
            model.model.layers[layer].register_forward_hook(
                lambda module, args, output, delta=delta: (
                    (output[0] + delta, *output[1:]) if isinstance(output, tuple) else output + delta
                )
            )
        )
    try:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=MAX_TOKENS,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )
    finally:
        for handle in handles:
            handle.remove()
    return out[0, ids.shape[1] :].tolist()


def ask(line: dict, prompt: str) -> list[int]:
    body = {
        "model": line["model"],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "return_token_ids": True,
        **line.get("extra_body", {}),
    }
    request = urllib.request.Request(
        line["url"] + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {line['key']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["choices"][0]["token_ids"]


def test_made_vector_served_at_residual_scale_equals_the_hook(lane_dir, tiny_model):
    folder = lane_dir / "made_vector"
    folder.mkdir()
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS))
    vector = folder / "vector.safetensors"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "steerbench.cli",
            "vector",
            "--model",
            str(tiny_model),
            "--pairs",
            str(pairs),
            "--layers",
            "1,2",
            "--position",
            "mean-answer",
            "--out",
            str(vector),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    read = read_vector_file(vector)
    scaled = {layer: v / np.linalg.norm(v) * read.residual_norms[layer] for layer, v in read.per_layer.items()}

    output = folder / "serve.out"
    command = [
        sys.executable,
        "-m",
        "steerbench.cli",
        "serve",
        "--model",
        str(tiny_model),
        "--vector",
        str(vector),
        "--scale",
        "residual",
        "--multipliers",
        "-0.5,0,0.5",
        "--one-server",
        "--port",
        "18130",
        "--out",
        str(folder / "deployments.jsonl"),
        "--log-dir",
        str(folder / "serve_logs"),
        *SERVE_ARGS,
    ]
    with open(output, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=folder)
    served = Served(process, folder / "deployments.jsonl", folder / "serve_logs", output, [18130])
    try:
        wait_ready(served)
        lines = {line["multiplier"]: line for line in served.lines()}
        assert lines["0.5"]["steering"]["scale"] == "residual"
        assert lines["0.5"]["steering"]["relative_norm"] == [0.5, 0.5]
        for multiplier, line in lines.items():
            for prompt in PROMPTS:
                assert ask(line, prompt) == reference(tiny_model, scaled, float(multiplier), prompt), (
                    multiplier,
                    prompt,
                )
        assert ask(lines["0.5"], PROMPTS[0]) != ask(lines["0"], PROMPTS[0])
    finally:
        assert served.stop() == 0
