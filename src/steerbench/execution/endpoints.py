"""Talking to steered endpoints before any eval: reachable, key accepted, which model they serve."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from ..core.config import ConfigError, Deployment


@dataclass(frozen=True)
class EndpointStatus:
    deployment: Deployment
    ok: bool
    served_model: str | None
    models: tuple[str, ...]
    latency_ms: float | None
    problem: str | None  # one line, never containing the key


def _models_url(url: str) -> str:
    return url.rstrip("/") + "/models"


def probe_endpoint(deployment: Deployment, key: str, timeout: float = 10.0) -> EndpointStatus:
    import httpx

    label = _label(deployment)

    def fail(problem: str, models: tuple[str, ...] = (), latency: float | None = None) -> EndpointStatus:
        return EndpointStatus(deployment, False, None, models, latency, f"{label}: {problem}")

    # the client (and its TLS context, ~0.1 s to build) exists before the clock starts, so
    # the latency is the endpoint's round trip rather than our set-up
    with httpx.Client(timeout=timeout) as client:
        started = time.perf_counter()
        try:
            response = client.get(_models_url(deployment.url), headers={"Authorization": f"Bearer {key}"})
        except httpx.TimeoutException:
            return fail(f"no answer within {timeout:.0f} s")
        except httpx.HTTPError as e:
            return fail(f"unreachable ({type(e).__name__}: {str(e).replace(key, '***') or 'connection failed'})")
        latency = (time.perf_counter() - started) * 1000
    if response.status_code in (401, 403):
        return fail(f"key rejected (HTTP {response.status_code})", latency=latency)
    if response.status_code != 200:
        return fail(f"GET /models answered HTTP {response.status_code}", latency=latency)
    try:
        payload: Any = response.json()
        models = tuple(str(m["id"]) for m in payload["data"])
    except Exception:
        return fail("GET /models did not return an OpenAI-style model list", latency=latency)
    if deployment.model:
        if models and deployment.model not in models:
            return fail(f"serves {', '.join(models)}, not the configured model {deployment.model!r}", models, latency)
        return EndpointStatus(deployment, True, deployment.model, models, latency, None)
    if len(models) != 1:
        listed = ", ".join(models) if models else "no models"
        return fail(
            f'lists {listed}; set "model" on line {deployment.line} of {deployment.source} to choose one',
            models,
            latency,
        )
    return EndpointStatus(deployment, True, models[0], models, latency, None)


def _label(deployment: Deployment) -> str:
    return f"multiplier {deployment.multiplier.label} ({deployment.url})"


def probe_all(deployments: list[Deployment], keys: dict[float, str], timeout: float = 10.0) -> list[EndpointStatus]:
    """Every deployment's status; deployments that share a server (URL, key, model) are probed once."""
    if not deployments:
        return []
    servers: dict[tuple[str, str, str | None], Deployment] = {}
    for d in deployments:
        servers.setdefault((d.url.rstrip("/"), keys[d.multiplier.value], d.model), d)
    with ThreadPoolExecutor(max_workers=min(16, len(servers))) as pool:
        probed = dict(
            zip(servers, pool.map(lambda d: probe_endpoint(d, keys[d.multiplier.value], timeout), servers.values()))
        )
    statuses = []
    for d in deployments:
        server = (d.url.rstrip("/"), keys[d.multiplier.value], d.model)
        status, first = probed[server], servers[server]
        if d is not first:
            problem = status.problem.replace(_label(first), _label(d), 1) if status.problem else None
            status = replace(status, deployment=d, problem=problem)
        statuses.append(status)
    return statuses


def resolve_keys(deployments: list[Deployment]) -> dict[float, str]:
    """Resolve every key now (late, in memory only); a missing ${VAR} is a ConfigError."""
    return {d.multiplier.value: d.resolve_key() for d in deployments}


def require_served_models(statuses: list[EndpointStatus]) -> dict[float, str]:
    problems = [s.problem or "failed" for s in statuses if not s.ok]
    if problems:
        raise PreflightError(problems)
    return {s.deployment.multiplier.value: s.served_model for s in statuses if s.served_model}


class PreflightError(Exception):
    """The environment is not ready (endpoint down, key rejected, dependency missing). Exit code 1."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("preflight failed:\n" + "\n".join(f"  - {p}" for p in problems))


__all__ = ["ConfigError", "EndpointStatus", "PreflightError", "probe_all", "probe_endpoint", "resolve_keys"]
