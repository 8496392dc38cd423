"""Before `ready:`, prove that every server steers: a probe request, then the plugin's own record of it.

A vLLM server can answer `/v1/models` and generate without steerbench's hook ever running: the
plugin was not loaded (`VLLM_PLUGINS` names only other plugins), a compiled graph froze the
per-token multipliers, or the model runner is one the plugin does not patch. Comparing answers
cannot tell these apart from a weak vector, so the plugin writes evidence next to its settings
file (`steerbench.serve.plugin.Proof`) and this module reads it:

1. some process of the server recorded `installed`, and the model runner it saw is one the
   plugin patches;
2. after one greedy request at a non-zero multiplier (per-request mode: `vllm_xargs`; fixed mode:
   the server's own multiplier), some process recorded `steered`: the steered layers, eager or
   inside a compiled graph, wrote a non-zero multiplier into the plugin's `fired` buffer, which
   the model runner reads after the forward (two generated tokens, so `--positions generated`
   steers the second). A server whose only
   multiplier is 0 is unsteered by design and needs only (1).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .plugin import REQUEST_FIELD, proof_path

PROBE_MULTIPLIER = 1.0
PROBE_TIMEOUT_SECONDS = 120.0
PROBE_PROMPT = "steerbench self-test"


class SteeringNotActive(Exception):
    """The server answers but does not steer."""


def read_proof(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a process that died mid-write
            continue
    return events


def _post(url: str, key: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _served_model(base_url: str, key: str) -> str:
    request = urllib.request.Request(base_url + "/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"][0]["id"]


def probe_body(model: str, settings: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The probe request and the multiplier it runs at (0 for a fixed server at m = 0: nothing to prove)."""
    body: dict[str, Any] = {"model": model, "prompt": PROBE_PROMPT, "max_tokens": 2, "temperature": 0.0}
    if settings["mode"] == "per_request":
        # its own cache salt, so the probe never shares prefix-cache blocks with a study's requests
        body.update(vllm_xargs={REQUEST_FIELD: PROBE_MULTIPLIER}, cache_salt="steerbench-selftest")
        return body, PROBE_MULTIPLIER
    return body, float(settings["multiplier"] or 0.0)


def _not_installed_reason(events: list[dict[str, Any]]) -> str | None:
    installed = [e for e in events if e.get("event") == "installed"]
    if not installed:
        plugins = os.environ.get("VLLM_PLUGINS")
        hint = (
            f"VLLM_PLUGINS={plugins!r} is set and vLLM loads only the plugins it names (add steerbench_steering)"
            if plugins is not None
            else "vLLM did not load the entry point vllm.general_plugins:steerbench_steering"
        )
        return f"steerbench's vLLM plugin never installed its hook: {hint}"
    unpatched = [e for e in installed if not e.get("runner_patched")]
    if unpatched:
        event = unpatched[0]
        return (
            f"vLLM {event.get('vllm', '?')} loads the model with {event.get('runner', '?')}, a model runner "
            "steerbench's plugin does not patch (it steers the V1 runner; set VLLM_USE_V2_MODEL_RUNNER=0 or use "
            "a vLLM that scripts/check_vllm_patch_points.py passes)"
        )
    return None


def prove_steering(
    base_url: str,
    key: str,
    settings: dict[str, Any],
    settings_path: Path,
    post: Callable[[str, str, dict[str, Any], float], dict[str, Any]] = _post,
    settle_seconds: float = 5.0,
) -> None:
    """Raise SteeringNotActive, with the reason, unless the server at `base_url` steers."""
    proof = proof_path(settings_path)
    reason = _not_installed_reason(read_proof(proof))
    if reason:
        raise SteeringNotActive(reason)
    body, multiplier = probe_body(_served_model(base_url, key), settings)
    if multiplier == 0.0:
        return
    post(base_url + "/completions", key, body, PROBE_TIMEOUT_SECONDS)
    # the worker appends its line before the response leaves; allow for a slow file system
    deadline = time.monotonic() + settle_seconds
    while time.monotonic() < deadline:
        if any(e.get("event") == "steered" for e in read_proof(proof)):
            return
        time.sleep(0.2)
    installed = next(e for e in read_proof(proof) if e.get("event") == "installed")
    raise SteeringNotActive(
        f"a request at multiplier {multiplier:g} ran without the steering hook (vLLM {installed.get('vllm', '?')}, "
        f"runner {installed.get('runner', '?')}, {installed.get('graph', 'eager')}); "
        "try `steerbench serve --eager`, and report it with the vLLM log"
    )
