"""Steering served by a real CPU vLLM: per-server and one-server modes against transformers' reference hook."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import LAYER, Served
from reference import reference_tokens

from steerbench.serve.launcher import descendants
from steerbench.sim.tiny_grid import write_benchmarks

PROMPTS = ["What is two plus two?", "Which planet is red?", "The quick brown fox jumps over the lazy dog. " * 6]
MAX_TOKENS = 12


def ask(line: dict, prompt: str, extra: dict | None = None, max_tokens: int = MAX_TOKENS) -> list[int]:
    """The greedy completion's token ids (text would hide a difference in a held-back partial character)."""
    body = {
        "model": line["model"],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "return_token_ids": True,
        **(line.get("extra_body", {}) if extra is None else extra),
    }
    request = urllib.request.Request(
        line["url"] + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {line['key']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["choices"][0]["token_ids"]


def by_multiplier(served: Served) -> dict[str, dict]:
    return {line["multiplier"]: line for line in served.lines()}


def test_deployments_file_is_private_and_carries_provenance(fleets, vector_file):
    import hashlib

    import numpy as np

    for served in fleets.values():
        assert os.stat(served.deployments).st_mode & 0o777 == 0o600
        lines = served.lines()
        assert [line["multiplier"] for line in lines] == ["-1", "0", "1"]
        for line in lines:
            assert line["steering"] == {
                "model": line["steering"]["model"],
                "layer": LAYER,
                "vector_sha256": hashlib.sha256(vector_file.read_bytes()).hexdigest(),
                "normalized": False,
                "scale": "raw",
                "operation": "add",
                "positions": "all",
                "vector_norm": pytest.approx(float(np.linalg.norm(np.load(vector_file))), abs=1e-5),
            }
        # named by the model folder's name, as GET /v1/models lists it: no absolute path
        assert {line["model"] for line in lines} == {"tiny"} and lines[0]["steering"]["model"] == "tiny"
        request = urllib.request.Request(
            lines[0]["url"] + "/models", headers={"Authorization": f"Bearer {lines[0]['key']}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert [model["id"] for model in json.load(response)["data"]] == ["tiny"]
    per_server, one = by_multiplier(fleets["per_server"]), by_multiplier(fleets["one_server"])
    assert len({line["url"] for line in per_server.values()}) == 3
    assert len({line["key"] for line in per_server.values()}) == 3
    assert len({(line["url"], line["key"]) for line in one.values()}) == 1
    assert one["1"]["extra_body"]["vllm_xargs"] == {"steer_multiplier": 1.0}
    assert len({line["extra_body"]["cache_salt"] for line in one.values()}) == 3


def test_zero_is_unsteered_and_nonzero_differs(fleets, tiny_model, vector_file):
    per_server, one = by_multiplier(fleets["per_server"]), by_multiplier(fleets["one_server"])
    for prompt in PROMPTS:
        unsteered = reference_tokens(tiny_model, vector_file, LAYER, 0.0, prompt, MAX_TOKENS)
        assert ask(per_server["0"], prompt) == unsteered
        assert ask(one["0"], prompt) == unsteered
        assert ask(one["0"], prompt, extra={}) == unsteered  # no steer_multiplier at all: unsteered
        assert ask(per_server["1"], prompt) != unsteered
        assert ask(per_server["-1"], prompt) != unsteered


@pytest.mark.parametrize("multiplier", ["-1", "1"])
def test_served_greedy_output_equals_transformers_hook(fleets, tiny_model, vector_file, multiplier):
    per_server, one = by_multiplier(fleets["per_server"]), by_multiplier(fleets["one_server"])
    for prompt in PROMPTS:
        expected = reference_tokens(tiny_model, vector_file, LAYER, float(multiplier), prompt, MAX_TOKENS)
        assert ask(per_server[multiplier], prompt) == expected
        assert ask(one[multiplier], prompt) == expected


def test_one_server_mixed_batches_match_dedicated_servers(fleets):
    per_server, one = by_multiplier(fleets["per_server"]), by_multiplier(fleets["one_server"])
    expected = {(m, p): ask(per_server[m], p) for m in per_server for p in PROMPTS}
    jobs = [(m, p) for m in one for p in PROMPTS] * 3
    with ThreadPoolExecutor(len(jobs)) as pool:  # all at once, so the engine batches multipliers together
        answers = list(pool.map(lambda job: ask(one[job[0]], job[1]), jobs))
    assert answers == [expected[job] for job in jobs]


def test_prefix_cache_never_crosses_multipliers(fleets):
    """The same long prompt at m = 0 first (filling the prefix cache), then at m = 1."""
    per_server, one = by_multiplier(fleets["per_server"]), by_multiplier(fleets["one_server"])
    prompt = "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z 0 1 2 3 4 5 6 7 8 9 " * 3 + "fresh"
    at_zero = ask(one["0"], prompt)
    at_one = ask(one["1"], prompt)
    assert at_zero == ask(per_server["0"], prompt)
    assert at_one == ask(per_server["1"], prompt)
    assert at_one != at_zero


def test_wrong_key_is_refused(fleets):
    line = dict(by_multiplier(fleets["per_server"])["1"], key="sb-wrong")
    with pytest.raises(urllib.error.HTTPError) as refused:
        ask(line, "hello")
    assert refused.value.code == 401


def steerbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steerbench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_check_passes_and_warns_on_an_unsteered_multiplier(fleets, lane_dir):
    folder = lane_dir / "check"
    folder.mkdir()
    benchmarks = write_benchmarks(folder / "benchmarks.jsonl", 4)
    for served in fleets.values():
        result = steerbench(
            "check", "--deployments", str(served.deployments), "--benchmarks", str(benchmarks), cwd=folder
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "gave identical answers" not in (result.stdout + result.stderr)
    # multiplier 1 pointed at the one server without its steer_multiplier: unsteered, like multiplier 0
    lines = by_multiplier(fleets["one_server"])
    broken = folder / "deployments.jsonl"
    unsteered = {key: value for key, value in lines["1"].items() if key != "extra_body"}
    broken.write_text("".join(json.dumps(line) + "\n" for line in (lines["0"], unsteered)))
    result = steerbench("check", "--deployments", str(broken), "--benchmarks", str(benchmarks), cwd=folder)
    output = result.stdout + result.stderr
    assert "warning: multipliers 0 and 1 gave identical answers" in output, output


def test_run_and_aggregate_one_server_equals_per_server(fleets, lane_dir):
    import pandas as pd

    benchmarks = write_benchmarks(lane_dir / "grid_benchmarks.jsonl", 12)
    frames = {}
    for name, served in fleets.items():
        folder = lane_dir / f"grid_{name}"
        folder.mkdir()
        common = ["--deployments", str(served.deployments), "--benchmarks", str(benchmarks), "--log-root", "logs"]
        result = steerbench("run", "--all", *common, "--max-tokens", str(MAX_TOKENS), cwd=folder)
        assert result.returncode == 0, result.stdout + result.stderr
        result = steerbench("aggregate", *common, "--output", "data.csv", cwd=folder)
        assert result.returncode == 0, result.stdout + result.stderr
        frame = pd.read_csv(folder / "data.csv").set_index("multiplier").sort_index()
        assert list(frame["status"]) == ["success"] * 3 and list(frame["n_samples"]) == [12] * 3
        assert set(frame["steering_layer"]) == {LAYER}
        assert set(frame["steering_model"]) == {"tiny"}
        assert set(frame["model"]) == {f"openai-api/steer_m{m}/tiny" for m in ("n1", "0", "1")}
        assert frame["steering_vector_sha256"].str.len().eq(64).all()
        frames[name] = frame
    assert frames["one_server"]["accuracy"].to_dict() == frames["per_server"]["accuracy"].to_dict()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_zz_sigterm_stops_every_process_and_frees_the_ports(fleets):
    """Runs last: it stops the fleets the other tests used."""
    for served in fleets.values():
        processes = descendants(served.process.pid)
        assert len(processes) >= 3  # API server, engine core, worker for each server
        assert served.stop() == 0
        assert "stopping" in served.output.read_text()
        assert [pid for pid in processes if alive(pid)] == []
        assert all(port_free(port) for port in served.ports)
        assert_clean_server_logs(served)


def assert_clean_server_logs(served: Served) -> None:
    """A stop in the order vLLM expects (API server first, it stops its engine core) logs no error."""
    logs = sorted(served.log_dir.glob("vllm-*.log"))
    assert len(logs) == len(served.ports)
    for log in logs:
        text = log.read_text(errors="replace")
        assert "[shutdown] API server: shutdown triggered" in text, log  # it saw the SIGTERM and shut down itself
        assert "mode=drain" in text and "force killing" not in text, log  # its engine core stopped in time
        shutdown = text.split("[shutdown] API server: shutdown triggered", 1)[1]
        errors = [line for line in shutdown.splitlines() if ") ERROR " in line]
        assert errors == [], f"{log}:\n" + "\n".join(errors)
        for problem in ("Traceback", "leaked semaphore", "api_server` command is deprecated"):
            assert problem not in text, f"{log}: {problem}\n" + text[-3000:]


def test_zz_no_key_in_any_file_written(fleets, lane_dir):
    keys = {line["key"] for served in fleets.values() for line in served.lines()}
    assert all(key.startswith("sb-") for key in keys)
    leaks = []
    for path in lane_dir.rglob("*"):
        if path.is_file() and path.name != "deployments.jsonl":
            text = path.read_bytes().decode(errors="replace")
            leaks += [f"{path}" for key in keys if key in text]
    assert leaks == []


def test_vllm_dying_at_start_up_shows_its_log_and_leaves_nothing(lane_dir, tiny_model, vector_file):
    folder = lane_dir / "dies"
    folder.mkdir()
    before = set(descendants(os.getpid()))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "steerbench.cli",
            "serve",
            "--model",
            str(tiny_model),
            "--vector",
            str(vector_file),
            "--layer",
            "1",
            "--multipliers",
            "0,1",
            "--port",
            "18120",
            "--out",
            str(folder / "deployments.jsonl"),
            "--log-dir",
            str(folder / "logs"),
            "--",
            "--max-model-len",
            "100000",
            "--kv-cache-memory-bytes",
            "128M",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "exited with code" in result.stderr and "during start-up" in result.stderr
    assert "max_model_len" in result.stderr or "max-model-len" in result.stderr  # vLLM's own reason, from its log
    assert "Traceback" not in result.stderr.split("Last lines of")[0]
    assert not (folder / "deployments.jsonl").exists()
    assert [pid for pid in set(descendants(os.getpid())) - before if alive(pid)] == []
    assert port_free(18120) and port_free(18121)


def test_zzz_a_server_started_after_the_others_is_steered_its_own_way(lane_dir, tiny_model, vector_file):
    """vLLM caches compiled graphs by a key two steering settings could share; a per-setting
    additional_config (and multipliers read from buffers, not baked in) keep a later server, with
    another multiplier, steered its own way."""
    from conftest import start_serve, wait_ready

    later = start_serve(lane_dir / "later", tiny_model, vector_file, "0.5", 18130)
    try:
        wait_ready(later)
        (line,) = later.lines()
        for prompt in PROMPTS[:2]:
            assert ask(line, prompt) == reference_tokens(tiny_model, vector_file, LAYER, 0.5, prompt, MAX_TOKENS)
    finally:
        assert later.stop() == 0
    assert_clean_server_logs(later)
