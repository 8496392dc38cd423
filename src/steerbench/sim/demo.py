"""The demo study (`steerbench demo`): the whole study, offline, against the built-in simulator.

The simulator's documented curve (see `demo_responder`): for a multiplier m,
- P(right answer) = max(0, 1 - 0.4 * max(0, |m| - 0.5))   (1.0 up to ±0.5, 0.8 at ±1, 0.6 at ±1.5)
- P(refuse a safe XSTest prompt)   = clip(0.1 + 0.3 * m, 0, 1)
- P(refuse an unsafe XSTest prompt) = clip(0.7 + 0.2 * m, 0, 1)
Each sample has a fixed rank u in [0, 1) (its position among its benchmark's samples); it is
answered right when u < P. So accuracy falls, and refusals rise, monotonically along the curve.

Degeneration (output health), every benchmark but XSTest (whose refusal curve stays as above):
every wrong answer beyond ±0.5 is a degenerate one. D(m) = 1 - P(right): a sample degenerates
when u >= 1 - D(m); the top quarter of that band (u >= 1 - D(m) / 4) answers with an empty text,
the rest with a repetition loop (the first 8 words of its wrong answer, then "and so on," again
and again up to the request's max_tokens, DEMO_TOKEN_LIMIT when it sets none) that ends with
finish_reason "length". Sycophancy: only the answer to "Are you sure?" degenerates, always as a
loop (it starts with the wrong answer's apology, so it still scores as sycophantic). So at ±1
15% of the samples are truncated loops and 5% empty, at ±1.5 30% and 10%, none up to ±0.5:
the capability benchmarks are safe within ±0.5 (at the demo's margin, DEMO_MARGIN) and flagged
for truncation at ±1.5. Every
benchmark has at least DEMO_ROWS samples (synthetic variants of the shipped rows,
sim/offline_data/_data.py), enough for the paired tests to find these.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .offline_data.responder import samples_of
from .simulator import SIMULATOR_NOTICE, SimulatedEndpoint, SimulatedFleet

DEMO_MULTIPLIERS = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
GRADER_SERVICE = "simgrader"  # Inspect reads SIMGRADER_BASE_URL and SIMGRADER_API_KEY
GRADER_MODEL = f"openai-api/{GRADER_SERVICE}/simulated-grader"

DEMO_BENCHMARKS: list[dict[str, Any]] = [
    {"name": "MMLU", "eval_name": "inspect_evals/mmlu_0_shot", "category": "General", "shots": 0},
    {"name": "IFEval", "eval_name": "inspect_evals/ifeval", "category": "General", "generate": {"max_tokens": None}},
    {"name": "ARC_Easy", "eval_name": "inspect_evals/arc_easy", "category": "Reasoning"},
    {"name": "ARC_Challenge", "eval_name": "inspect_evals/arc_challenge", "category": "Reasoning"},
    # one epoch, not the tasks' 4 and 5: the simulator answers every epoch alike, and the demo stays fast
    {"name": "GPQA", "eval_name": "inspect_evals/gpqa_diamond", "category": "Reasoning", "epochs": 1},
    {"name": "HumanEval", "eval_name": "inspect_evals/humaneval", "category": "Code", "sandbox": "local"},
    {"name": "MBPP", "eval_name": "inspect_evals/mbpp", "category": "Code", "sandbox": "local", "epochs": 1},
    {"name": "GSM8K", "eval_name": "inspect_evals/gsm8k", "category": "Math", "shots": 8},
    {"name": "CommonSenseQA", "eval_name": "inspect_evals/commonsense_qa", "category": "Other"},
    {"name": "TruthfulQA", "eval_name": "inspect_evals/truthfulqa", "category": "Other"},
    {"name": "Sycophancy", "eval_name": "inspect_evals/sycophancy", "category": "Safety", "grader": GRADER_MODEL},
    {
        "name": "XSTest",
        "eval_name": "inspect_evals/xstest",
        "category": "Safety",
        "subsets": [{"subset": "safe"}, {"subset": "unsafe"}],
        "grader": GRADER_MODEL,
    },
]


def p_right(m: float) -> float:
    return max(0.0, 1.0 - 0.4 * max(0.0, abs(m) - 0.5))


DEMO_ROWS = 40  # samples per benchmark (XSTest: per subset)
# The demo report's safe-range margin (0-1 scale). With 40 unchanged pairs the exact non-inferiority
# p is 0.45 at 0.02 and 1.9e-4 at 0.25 (below Holm's 0.05 / 72), while the 8 of 40 lost at |m| = 1
# (harm 0.2) give p = 0.30: so the range is exactly ±0.5, as the curve above is built to show.
DEMO_MARGIN = 0.25
DEMO_TOKEN_LIMIT = 256  # the length of a degenerate loop when the request sets no max_tokens


def p_degenerate(m: float) -> float:
    return 1.0 - p_right(m)


def degeneration(m: float, rank: float, benchmark: str = "") -> str | None:
    """None (a normal answer), "empty" or "loop" for a sample of rank `rank` at multiplier m."""
    share = p_degenerate(m)
    if benchmark == "xstest" or share <= 0 or rank < 1 - share:
        return None
    return "empty" if rank >= 1 - share / 4 and benchmark != "sycophancy" else "loop"


def degenerate_answer(kind: str, wrong: str, body: dict[str, Any]) -> Any:
    """The degenerate answer of `kind`: empty, or a loop cut at the token limit (a token is a word)."""
    from .simulator import Reply

    if kind == "empty":
        return Reply("")
    limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or DEMO_TOKEN_LIMIT)
    words = wrong.split()[:8]
    while len(words) < limit:
        words += ["and", "so", "on,"]
    return Reply(" ".join(words[:limit]), finish_reason="length")


def p_refuse(m: float, unsafe: bool) -> float:
    raw = 0.7 + 0.2 * m if unsafe else 0.1 + 0.3 * m
    return min(1.0, max(0.0, raw))


def sample_rank(found: Any) -> float:
    """A fixed number in [0, 1) per sample, spread evenly over its benchmark's samples
    (the k-th of n samples has rank (k + 0.5) / n), so that even a 4-sample dataset
    follows the curve: P(right) = 0.55 answers 2 of 4 right."""
    siblings = [s.key for s in samples_of(found.sample.benchmark)]
    if found.sample.benchmark == "xstest":  # safe and unsafe prompts are two subsets
        siblings = [s.key for s in samples_of("xstest") if s.row.get("label") == found.sample.row.get("label")]
    return (siblings.index(found.sample.key) + 0.5) / len(siblings)


def demo_responder(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> Any:
    from .offline_data import identify, respond

    found = identify(messages)
    if found is None:  # not one of the bundled samples: say what we are
        return f"[{SIMULATOR_NOTICE}; multiplier {multiplier:+.2f}] I can only answer the bundled demo questions."
    if found.sample is None:  # a grader prompt sent to a steered endpoint: grade honestly
        return respond(messages, correct=True)
    rank = sample_rank(found)
    if found is not None and found.kind == "task" and found.benchmark == "xstest" and found.sample:
        unsafe = found.sample.row.get("label") == "unsafe"
        refuse = rank < p_refuse(multiplier, unsafe)
        # respond(correct=True) is the appropriate behaviour: refuse unsafe, comply with safe
        return respond(messages, correct=(refuse == unsafe))
    kind = degeneration(multiplier, rank, found.benchmark)
    if kind is not None and (found.benchmark != "sycophancy" or found.followup):
        return degenerate_answer(kind, respond(messages, correct=False), body)
    return respond(messages, correct=rank < p_right(multiplier))


def grader_responder(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    from .offline_data import respond

    return respond(messages, correct=True)  # graders grade honestly


@dataclass(frozen=True)
class DemoResult:
    out: Path
    csv: Path
    report: Path | None
    seconds: float
    failed: int


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def demo_benchmarks(include_ifeval: bool) -> list[dict[str, Any]]:
    return [
        {**b, "description": "SIMULATED demo: run against steerbench's simulator on synthetic data"}
        for b in DEMO_BENCHMARKS
        if include_ifeval or b["name"] != "IFEval"
    ]


@contextlib.contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    """os.environ with `changes` for the duration (worker processes inherit it), restored after."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(
    out: Path,
    say: Callable[[str], None] = print,
    workers: int | None = None,
    multipliers: list[float] | None = None,
    summarise: Callable[[Any], Iterable[str]] | None = None,
) -> DemoResult:
    """The whole demo into `out`; `summarise(run result)` gives the lines said after the run.
    os.environ is as before when it returns."""
    from .offline_data import prepare_offline_cache
    from .offline_data._data import more_rows

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "SIMULATED.txt").write_text(
        f"{SIMULATOR_NOTICE}.\nEverything in this folder was produced by `steerbench demo` against the "
        "built-in simulator on 127.0.0.1, on small synthetic datasets (and variants of their rows). No real model was evaluated.\n"
    )
    say(f"steerbench demo: {SIMULATOR_NOTICE}")
    say(f"[1/5] preparing the bundled synthetic datasets in {out / 'cache'} ({DEMO_ROWS} samples a benchmark)")
    with more_rows(DEMO_ROWS), _environment(prepare_offline_cache(out / "cache")):
        return _run_demo(out, say, workers, multipliers, summarise, started)


def _run_demo(
    out: Path,
    say: Callable[[str], None],
    workers: int | None,
    multipliers: list[float] | None,
    summarise: Callable[[Any], Iterable[str]] | None,
    started: float,
) -> DemoResult:
    import importlib.util

    from ..core.plan import RunOptions
    from ..execution.study import load_plan, preflight, run_study
    from ..results.aggregate import aggregate, write_csv
    from .offline_data import synthetic_gpqa_sha256

    include_ifeval = importlib.util.find_spec("instruction_following_eval") is not None
    if not include_ifeval:
        say("      IFEval is left out: its module instruction_following_eval is not installed (not on PyPI)")
    grader = SimulatedEndpoint(0.0, grader_responder, model="simulated-grader")
    fleet = SimulatedFleet(multipliers or DEMO_MULTIPLIERS, demo_responder)
    try:
        grader.start()
        grader_env = {f"{GRADER_SERVICE.upper()}_BASE_URL": grader.url, f"{GRADER_SERVICE.upper()}_API_KEY": grader.key}
        with fleet, _environment(grader_env):
            say(
                f"[2/5] simulator: {len(fleet.endpoints)} endpoints on 127.0.0.1 "
                f"(ports {', '.join(str(e.port) for e in fleet.endpoints)}), each with its own random key"
            )
            deployments, benchmarks = out / "deployments.jsonl", out / "benchmarks.jsonl"
            fleet.write_deployments(deployments, with_model=True)  # model "simulated-steered-model"
            _write_jsonl(benchmarks, demo_benchmarks(include_ifeval))
            # the tasks read the synthetic datasets: trust the synthetic GPQA CSV
            plan = load_plan(deployments, benchmarks, RunOptions(all=True, trust_gpqa_sha256=synthetic_gpqa_sha256()))
            ready = preflight(plan)
            say(
                f"[3/5] running {len(plan.cells)} evals (real inspect_evals tasks; HumanEval/MBPP run the "
                "simulator's code in the local sandbox)"
            )
            result = run_study(plan, ready, str(out / "logs"), workers)
            for line in summarise(result) if summarise else ():
                say(line)
    finally:
        grader.stop()
    say("[4/5] aggregating")
    csv = out / "data" / "aggregated_inspect_logs.csv"
    aggregated = aggregate(str(out / "logs"))
    write_csv(aggregated, str(csv))
    report = _write_report(out, csv, say)
    seconds = time.perf_counter() - started
    say(f"done in {seconds:.0f} s. Results (SIMULATED):")
    say(f"  logs:   {out / 'logs'}")
    say(f"  CSV:    {csv}")
    if report:
        say(f"  report: {report}")
    return DemoResult(out, csv, report, seconds, len(result.failed))


def _write_report(out: Path, csv: Path, say: Callable[[str], None]) -> Path | None:
    try:
        from ..report.html import write_report
    except ImportError:
        say("[5/5] report: not available in this version")
        return None
    say(
        f"[5/5] writing the report and figures (safe-range margin {DEMO_MARGIN:g}: {DEMO_ROWS} samples a cell "
        "cannot show non-inferiority at a smaller one; `steerbench report` defaults to 0.02)"
    )
    return write_report(
        log_root=str(out / "logs"),
        csv=str(csv),
        out=str(out / "outputs"),
        title="steerbench demo (SIMULATED model)",
        simulated=True,
        margin=DEMO_MARGIN,
    )
