"""The preflight `run` performs, on its own, plus a steering sanity check (`steerbench check`).

The preflight (steerbench.execution.study.preflight_report) asks every endpoint for its models with its
key (reachable, key accepted, served model, round-trip latency), and checks task dependencies,
grader keys and the log root. The steering sanity check then sends the same few prompts at
temperature 0 to every endpoint and compares the answers: two multipliers that answer
everything identically usually mean the same multiplier was deployed twice, or that the
server ignores the steering vector.
"""

from __future__ import annotations

import difflib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from ..core.plan import Plan
from .endpoints import EndpointStatus
from .preflight import Checked
from .redaction import Redactor

# Open-ended on purpose: a steered model's wording drifts even where a multiple-choice
# answer would not change.
SANITY_PROMPTS = (
    "Describe the ocean to someone who has never seen it, in three sentences.",
    "Give a new programmer one piece of advice, and explain why in two sentences.",
    "Write a four-line poem about an old bicycle.",
)
SANITY_MAX_TOKENS = 80


@dataclass(frozen=True)
class EndpointAnswers:
    multiplier: str
    answers: tuple[str, ...]
    latency_ms: float  # mean time for one completion


@dataclass(frozen=True)
class PairComparison:
    first: str  # multiplier labels
    second: str
    identical: int  # prompts answered with exactly the same text
    prompts: int
    similarity: float  # mean difflib ratio over prompts, 1.0 = identical

    @property
    def all_identical(self) -> bool:
        return self.prompts > 0 and self.identical == self.prompts


@dataclass
class CheckReport:
    endpoints: list[EndpointStatus]
    problems: list[str]  # failures: exit code 1
    checked: list[Checked] = field(default_factory=list)  # task dependencies, grader keys, log root
    answers: list[EndpointAnswers] = field(default_factory=list)
    pairs: list[PairComparison] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- asking


def ask(client: Any, url: str, key: str, model: str, prompt: str, extra_body: dict[str, Any] | None = None) -> str:
    """One chat completion at temperature 0; raises RuntimeError with a one-line reason."""
    import httpx

    try:
        response = client.post(
            url.rstrip("/") + "/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0.0,
                "max_tokens": SANITY_MAX_TOKENS,
                **(extra_body or {}),  # per-request steering: the multiplier travels in the body
            },
        )
    except httpx.TimeoutException:
        raise RuntimeError("no answer in time") from None
    except httpx.HTTPError as e:
        raise RuntimeError(f"{type(e).__name__}: {e}") from None
    if response.status_code != 200:
        raise RuntimeError(f"POST /chat/completions answered HTTP {response.status_code}")
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except Exception:
        raise RuntimeError("POST /chat/completions did not return an OpenAI-style completion") from None
    return content if isinstance(content, str) else ""


def ask_endpoint(status: EndpointStatus, key: str, prompts: tuple[str, ...], timeout: float) -> EndpointAnswers | str:
    """The prompts one after another to one endpoint: its answers, or the first problem."""
    import httpx

    deployment = status.deployment
    label = f"multiplier {deployment.multiplier.label} ({deployment.url})"
    texts: list[str] = []
    with httpx.Client(timeout=timeout) as client:
        started = time.perf_counter()
        for prompt in prompts:
            try:
                texts.append(ask(client, deployment.url, key, status.served_model or "", prompt, deployment.extra_body))
            except RuntimeError as e:
                return f"{label}: steering sanity prompt failed: {e}"
        mean_ms = (time.perf_counter() - started) * 1000 / max(1, len(prompts))
    return EndpointAnswers(deployment.multiplier.label, tuple(texts), mean_ms)


def collect_answers(
    endpoints: list[EndpointStatus], keys: dict[float, str], prompts: tuple[str, ...], timeout: float
) -> tuple[list[EndpointAnswers], list[str]]:
    """Every endpoint at once; (answers of the endpoints that answered every prompt, problems)."""
    if not endpoints:
        return [], []
    with ThreadPoolExecutor(max_workers=min(16, len(endpoints))) as pool:
        results = list(
            pool.map(lambda s: ask_endpoint(s, keys[s.deployment.multiplier.value], prompts, timeout), endpoints)
        )
    answers = [r for r in results if isinstance(r, EndpointAnswers)]
    problems = [r for r in results if isinstance(r, str)]
    return answers, problems


# ---------------------------------------------------------------- comparing


def compare_answers(answers: list[EndpointAnswers]) -> list[PairComparison]:
    pairs = []
    for a, b in combinations(answers, 2):
        same = sum(1 for x, y in zip(a.answers, b.answers) if x.strip() == y.strip())
        ratios = [difflib.SequenceMatcher(None, x, y).ratio() for x, y in zip(a.answers, b.answers)]
        pairs.append(
            PairComparison(a.multiplier, b.multiplier, same, len(ratios), sum(ratios) / len(ratios) if ratios else 0.0)
        )
    return pairs


def identical_warnings(pairs: list[PairComparison]) -> list[str]:
    return [
        f"multipliers {p.first} and {p.second} gave identical answers to all {p.prompts} prompts at temperature 0: "
        "the same multiplier is probably deployed twice, or steering is not applied"
        for p in pairs
        if p.all_identical
    ]


# ---------------------------------------------------------------- the whole check


def run_check(
    plan: Plan,
    log_root: str | None = None,
    prompts: tuple[str, ...] = SANITY_PROMPTS,
    timeout: float = 60.0,
) -> CheckReport:
    from .study import preflight_report

    preflight = preflight_report(plan, log_root)
    redactor = Redactor(preflight.keys.values())
    healthy = [s for s in preflight.endpoints if s.ok]
    answers, answer_problems = collect_answers(healthy, preflight.keys, prompts, timeout)
    pairs = compare_answers(answers)
    report = CheckReport(
        endpoints=preflight.endpoints,
        problems=[redactor.text(p) for p in preflight.problems + answer_problems],
        checked=preflight.checked,
        answers=[
            EndpointAnswers(a.multiplier, tuple(redactor.text(t) for t in a.answers), a.latency_ms) for a in answers
        ],
        pairs=pairs,
        warnings=identical_warnings(pairs),
    )
    if len(answers) < 2 and len(plan.deployments) >= 2:
        report.warnings.append("fewer than two endpoints answered, so steering could not be compared")
    return report
