"""A real steered model end to end: SmolLM2-135M-Instruct, a cheerful-minus-gloomy vector made by
`steerbench vector` at layer 12, served by `steerbench serve --one-server --scale residual` on a CPU
vLLM at multipliers -0.8, 0 and 0.8 (units of layer 12's mean residual norm), and the first 20
problems of the real HumanEval run, aggregated and reported by steerbench.

At 0.8 residual norms the model collapses on both sides of 0 (loops of newlines, "that it is not a
sin that it is ..." runs, answers cut at the token limit), which is what the health measures and
flags must show. Numbers of one lane run are in docs/tutorial/real-model.md.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
LAYER = 12
MULTIPLIERS = ["-0.8", "0", "0.8"]
DEGENERATE = ["-0.8", "0.8"]
PROBLEMS = 20
MAX_TOKENS = 256
REQUEST_TIMEOUT = 900
CHECKED_PROBLEMS = 2  # m = 0 against transformers' greedy tokens
PORT = 18400
MODEL_NAME = "SmolLM2-135M-Instruct"
SERVE_ARGS = ["--", "--dtype", "float32", "--kv-cache-memory-bytes", "1G", "--max-model-len", "2048"]


def steerbench(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steerbench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def tree_pss_bytes(pid: int) -> int:
    """Proportional set size of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


@dataclass
class Study:
    folder: Path
    model: Path
    deployments: dict[str, dict]
    rows: dict[str, dict]  # multiplier -> aggregate CSV row
    answers: dict[str, dict[str, str]]  # multiplier -> sample id -> the answer's text
    served_tokens: dict[str, list[int]]  # sample id -> m = 0 token ids asked of the server directly
    outputs: dict[str, str]  # command -> its stdout + stderr
    seconds: dict[str, float]
    serve_pss_bytes: int


def ask_tokens(line: dict, prompt: str) -> list[int]:
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
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)["choices"][0]["token_ids"]


def wait_ready(process: subprocess.Popen, output: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output.read_text()
        if any(line.startswith("ready:") for line in text.splitlines()):
            return
        if process.poll() is not None:
            raise AssertionError(f"steerbench serve exited {process.returncode}:\n{text}")
        time.sleep(1)
    raise AssertionError(f"steerbench serve not ready after {timeout} s:\n{output.read_text()}")


def sample_prompts(problems: int) -> dict[str, str]:
    """Sample id -> the exact user message the task sends (inspect_evals' instruction + the problem)."""
    sys.path.insert(0, str(HERE))
    from humaneval_package import humaneval_rows
    from inspect_evals.humaneval.humaneval import INSTRUCTION

    return {row["task_id"]: INSTRUCTION + row["prompt"] for row in humaneval_rows()[:problems]}


def log_answers(log_file: str) -> dict[str, str]:
    from inspect_ai.log import read_eval_log

    log = read_eval_log(log_file)
    return {str(sample.id): sample.output.completion for sample in log.samples or []}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    import pandas as pd

    from steerbench.sim.smollm2 import build_smollm2

    folder = tmp_path_factory.mktemp("real_model")
    seconds: dict[str, float] = {}
    outputs: dict[str, str] = {}
    started = time.monotonic()
    model = build_smollm2(folder / MODEL_NAME)
    seconds["model"] = time.monotonic() - started

    started = time.monotonic()
    made = steerbench(
        "vector",
        "--model",
        str(model),
        "--pairs",
        str(HERE / "pairs.jsonl"),
        "--layers",
        str(LAYER),
        "--out",
        "vector.safetensors",
        "--no-progress",
        cwd=folder,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    seconds["vector"] = time.monotonic() - started

    benchmarks = folder / "benchmarks.jsonl"
    line = json.loads((HERE / "benchmarks.jsonl").read_text())
    line["eval_name"] = line["eval_name"].replace("humaneval_package.py", str(HERE / "humaneval_package.py"))
    line["task_args"]["problems"] = PROBLEMS
    benchmarks.write_text(json.dumps(line) + "\n")

    started = time.monotonic()
    serve_out = folder / "serve.out"
    command = [
        sys.executable,
        "-m",
        "steerbench.cli",
        "serve",
        "--model",
        str(model),
        "--vector",
        "vector.safetensors",
        "--scale",
        "residual",
        "--layer",
        str(LAYER),
        "--multipliers",
        ",".join(MULTIPLIERS),
        "--one-server",
        "--port",
        str(PORT),
        "--out",
        "deployments.jsonl",
        "--log-dir",
        "serve_logs",
        *SERVE_ARGS,
    ]
    with open(serve_out, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=folder)
    try:
        wait_ready(process, serve_out)
        seconds["serve start"] = time.monotonic() - started
        deployments = {
            line["multiplier"]: line
            for line in map(json.loads, (folder / "deployments.jsonl").read_text().splitlines())
        }
        common = ["--deployments", "deployments.jsonl", "--benchmarks", str(benchmarks), "--log-root", "logs"]
        started = time.monotonic()
        # a CPU server shares its cores among every request at once: no request may give up and be resent
        ran = steerbench(
            "run",
            "--all",
            *common,
            "--max-tokens",
            str(MAX_TOKENS),
            "--sandbox",
            "local",
            "--request-timeout",
            str(REQUEST_TIMEOUT),
            cwd=folder,
            timeout=2 * REQUEST_TIMEOUT,
        )
        outputs["run"] = ran.stdout + ran.stderr
        assert ran.returncode == 0, outputs["run"]
        seconds["run"] = time.monotonic() - started
        serve_pss = tree_pss_bytes(process.pid)
        prompts = sample_prompts(CHECKED_PROBLEMS)
        served_tokens = {sample_id: ask_tokens(deployments["0"], prompt) for sample_id, prompt in prompts.items()}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        stopped = process.wait(timeout=120)
    assert stopped == 0, serve_out.read_text()

    for command in ("aggregate", "report"):
        started = time.monotonic()
        done = steerbench(
            command,
            *common,
            *(["--output", "data/aggregated.csv"] if command == "aggregate" else ["--csv", "data/aggregated.csv"]),
            cwd=folder,
        )
        outputs[command] = done.stdout + done.stderr
        assert done.returncode == 0, outputs[command]
        seconds[command] = time.monotonic() - started
    frame = pd.read_csv(folder / "data" / "aggregated.csv", dtype={"multiplier": str})
    rows = {str(row["multiplier"]): row for row in frame.to_dict("records")}
    answers = {multiplier: log_answers(row["log_file"]) for multiplier, row in rows.items()}
    study = Study(folder, model, deployments, rows, answers, served_tokens, outputs, seconds, serve_pss)
    print(
        f"\nreal-model lane: {json.dumps({k: round(v) for k, v in seconds.items()})} s; "
        f"serve process tree {serve_pss / 2**30:.2f} GiB PSS after the run"
    )
    for multiplier in MULTIPLIERS:
        row = rows[multiplier]
        print(
            f"  m={multiplier}: accuracy {row['accuracy']:.3f}, truncated {row['output_truncated_rate']:.2f}, "
            f"repetition {row['output_repetition']:.3f}, tokens {row['output_tokens_mean']:.0f}"
        )
    return study


def test_every_cell_succeeded_on_every_problem(study: Study):
    assert sorted(study.rows) == sorted(MULTIPLIERS, key=float)
    for multiplier, row in study.rows.items():
        assert row["status"] == "success", (multiplier, row["status"])
        assert row["completed_samples"] == PROBLEMS and row["n_samples"] == PROBLEMS
        assert row["steering_scale"] == "residual" and str(row["steering_layer"]) == str(LAYER)
        # served by the folder's name, never by its absolute path
        assert row["model"].endswith(f"/{MODEL_NAME}") and "//" not in row["model"], row["model"]
        assert len(study.answers[multiplier]) == PROBLEMS


def test_multiplier_zero_gives_transformers_unsteered_greedy_tokens(study: Study):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(study.model)
    model = AutoModelForCausalLM.from_pretrained(study.model, dtype=torch.float32)
    for sample_id, prompt in sample_prompts(CHECKED_PROBLEMS).items():
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
        expected = out[0, ids.shape[1] :].tolist()
        assert study.served_tokens[sample_id] == expected, sample_id
        # and the study's own m = 0 answer (through Inspect) is that text
        text = tokenizer.decode(expected, skip_special_tokens=True)
        assert study.answers["0"][sample_id].strip() == text.strip(), sample_id


def test_steered_answers_differ_from_unsteered(study: Study):
    for multiplier in DEGENERATE:
        same = [i for i, text in study.answers[multiplier].items() if text == study.answers["0"][i]]
        assert not same, (multiplier, same)


def test_degenerate_multipliers_are_more_repetitive_and_truncated(study: Study):
    zero = study.rows["0"]
    for multiplier in DEGENERATE:
        row = study.rows[multiplier]
        assert row["output_repetition"] > zero["output_repetition"] + 0.2, (
            multiplier,
            row["output_repetition"],
            zero["output_repetition"],
        )
        assert row["output_truncated_rate"] > zero["output_truncated_rate"], multiplier


def test_degenerate_multipliers_are_flagged_by_aggregate_and_report(study: Study):
    report = (study.folder / "outputs" / "report.html").read_text()
    for multiplier in DEGENERATE:
        flag = f"output truncated: HumanEval at multiplier {multiplier}"
        assert flag in study.outputs["aggregate"], study.outputs["aggregate"]
        assert flag in study.outputs["report"], study.outputs["report"]
        assert f"HumanEval at multiplier {multiplier}" in report
    assert "HumanEval at multiplier 0:" not in study.outputs["aggregate"]
