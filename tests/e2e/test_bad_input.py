"""Malformed input files and flags: one clear error naming file, line and field, exit code 2,
no traceback, nothing written, nothing sent. And a log folder with damaged logs still
aggregates, with a warning for each log it skips."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from tests.helpers import expected_accuracy, toy_benchmarks, toy_responder

from steerbench.cli import main
from steerbench.sim.simulator import SimulatedFleet

UNSET_KEY_VAR = "STEERBENCH_TEST_KEY_THAT_IS_NOT_SET"
CREDENTIAL = "hunter2-in-the-url"


@pytest.fixture(scope="module")
def endpoints():
    """Two live endpoints: a bad input must not reach them (not even the preflight's GET)."""
    with SimulatedFleet([0.0, 1.0], toy_responder) as fleet:
        yield fleet.endpoints


Rows = list[dict[str, Any]]


def jsonl(*rows: dict[str, Any] | str) -> bytes:
    """JSONL bytes; a str row is written as is (for text that is not valid JSON)."""
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


def good_benchmarks() -> Rows:
    return [json.loads(line) for line in toy_benchmarks(Path("toy-benchmarks.jsonl")).read_text().splitlines()]


@dataclass(frozen=True)
class Case:
    id: str
    where: str  # "deployments.jsonl", "benchmarks.jsonl", "command line" (or the flag, in click's messages)
    line: int | None
    field: str | None
    deployments: Callable[[Rows], bytes] | None = None  # from the good rows; None: the good file
    benchmarks: Callable[[Rows], bytes] | None = None
    args: tuple[str, ...] = ("--all",)
    says: str = ""  # a further word the message must contain


def dep(row: int, **change: Any) -> Callable[[Rows], bytes]:
    """The good deployments with one line's fields changed (None removes a field)."""

    def build(rows: Rows) -> bytes:
        changed = {**rows[row], **change}
        return jsonl(
            *[{k: v for k, v in changed.items() if v is not None} if i == row else r for i, r in enumerate(rows)]
        )

    return build


def bench(row: int, **change: Any) -> Callable[[Rows], bytes]:
    def build(rows: Rows) -> bytes:
        changed = {**rows[row], **change}
        return jsonl(*[changed if i == row else r for i, r in enumerate(rows)])

    return build


def second_line_raw(text: str) -> Callable[[Rows], bytes]:
    return lambda rows: jsonl(rows[0], text)


D, B, C = "deployments.jsonl", "benchmarks.jsonl", "command line"
CASES = [
    # deployments.jsonl: the file itself
    Case("dep-invalid-json", D, 2, None, second_line_raw('{"multiplier": "1.0", "url": '), says="invalid JSON"),
    Case("dep-empty-file", D, None, None, lambda rows: b"", says="empty"),
    Case("dep-only-blank-lines", D, None, None, lambda rows: b"\n  \n\n", says="empty"),
    Case("dep-byte-order-mark", D, 1, None, lambda rows: b"\xef\xbb\xbf" + jsonl(*rows), says="byte-order mark"),
    Case("dep-not-utf8", D, 3, None, lambda rows: jsonl(*rows) + b'{"key": "\xff"}\n', says="UTF-8"),
    Case("dep-line-not-an-object", D, 2, None, second_line_raw("[1.0, 2.0]"), says="one JSON object"),
    # multipliers
    Case(
        "dep-nan-multiplier",
        D,
        2,
        "multiplier",
        second_line_raw('{"multiplier": NaN, "url": "http://h/v1/", "key": "k"}'),
        says="NaN",
    ),
    Case(
        "dep-infinite-multiplier",
        D,
        2,
        "multiplier",
        second_line_raw('{"multiplier": -Infinity, "url": "http://h/v1/", "key": "k"}'),
        says="Infinity",
    ),
    Case("dep-nan-string-multiplier", D, 2, "multiplier", dep(1, multiplier="nan")),
    Case(
        "dep-overflowing-multiplier",
        D,
        2,
        "multiplier",
        second_line_raw('{"multiplier": 1e999, "url": "http://h/v1/", "key": "k"}'),
        says="finite",
    ),
    Case("dep-boolean-multiplier", D, 2, "multiplier", dep(1, multiplier=True)),
    Case(
        "dep-duplicate-0-and-0.0",
        D,
        2,
        "multiplier",
        lambda rows: jsonl({**rows[0], "multiplier": "0"}, {**rows[1], "multiplier": "0.0"}),
        says="duplicates line 1",
    ),
    Case(
        "dep-duplicate-0-and-minus-0",
        D,
        2,
        "multiplier",
        lambda rows: jsonl({**rows[0], "multiplier": 0}, {**rows[1], "multiplier": "-0"}),
        says="duplicates line 1",
    ),
    # urls and keys
    Case("dep-url-without-scheme", D, 2, "url", dep(1, url="127.0.0.1:8000/v1/")),
    Case(
        "dep-url-with-credentials",
        D,
        2,
        "url",
        dep(1, url=f"http://user:{CREDENTIAL}@127.0.0.1:1/v1/"),
        says="credentials",
    ),
    Case("dep-url-not-a-string", D, 2, "url", dep(1, url=8000)),
    Case("dep-url-missing", D, 2, "url", dep(1, url=None), says="missing"),
    Case("dep-key-wrong-type", D, 1, "key", dep(0, key=12345)),
    Case("dep-key-malformed-env-reference", D, 2, "key", dep(1, key="$OPENAI_KEY")),
    Case("dep-key-env-var-not-set", D, 2, "key", dep(1, key=f"${{{UNSET_KEY_VAR}}}"), says=UNSET_KEY_VAR),
    Case("dep-unknown-field", D, 1, "kye", dep(0, kye="typo"), says="unknown field"),
    # benchmarks.jsonl
    Case(
        "bench-invalid-json", B, 2, None, benchmarks=second_line_raw("{'name': 'single quotes'}"), says="invalid JSON"
    ),
    Case("bench-empty-file", B, None, None, benchmarks=lambda rows: b""),
    Case("bench-byte-order-mark", B, 1, None, benchmarks=lambda rows: b"\xef\xbb\xbf" + jsonl(*rows)),
    Case(
        "bench-unknown-task",
        B,
        1,
        "eval_name",
        benchmarks=bench(0, eval_name="inspect_evals/no_such_task_anywhere"),
        says="unknown Inspect task",
    ),
    Case("bench-unknown-task-file", B, 2, "eval_name", benchmarks=bench(1, eval_name="no_such_file.py@capitals")),
    Case("bench-unknown-task-argument", B, 1, "task_args", benchmarks=bench(0, task_args={"offsett": 1})),
    Case("bench-unknown-field", B, 2, "shot", benchmarks=bench(1, shot=2), says="unknown field"),
    Case("bench-category-dot-dot", B, 1, "category", benchmarks=bench(0, category="..")),
    Case("bench-category-escapes-upward", B, 1, "category", benchmarks=bench(0, category="../elsewhere")),
    Case("bench-category-absolute-path", B, 2, "category", benchmarks=bench(1, category="/etc")),
    Case("bench-name-with-separator", B, 1, "name", benchmarks=bench(0, name="math/arithmetic")),
    Case("bench-name-with-backslash", B, 1, "name", benchmarks=bench(0, name="math\\arithmetic")),
    Case("bench-name-with-nul", B, 2, "name", benchmarks=bench(1, name="capi\u0000tals")),
    Case("bench-subset-escapes", B, 1, "subsets[0]", benchmarks=bench(0, subsets=[{"offset": "../../x"}])),
    Case("bench-duplicate-name", B, 2, "name", benchmarks=bench(1, name="ARITHMETIC"), says="duplicates line 1"),
    Case("bench-shots-as-string", B, 2, "shots", benchmarks=bench(1, shots="8")),
    Case("bench-shots-negative", B, 2, "shots", benchmarks=bench(1, shots=-1)),
    Case("bench-task-args-not-an-object", B, 1, "task_args", benchmarks=bench(0, task_args=[1, 2])),
    Case("bench-unknown-generate-setting", B, 1, "generate", benchmarks=bench(0, generate={"temprature": 0})),
    Case("bench-grader-not-a-model", B, 2, "grader", benchmarks=bench(1, grader="gpt4")),
    Case("bench-unknown-sandbox", B, 1, "sandbox", benchmarks=bench(0, sandbox="vm")),
    # flags
    Case("flag-limit-zero", C, None, "--limit", args=("--all", "--limit", "0")),
    Case("flag-limit-negative", C, None, "--limit", args=("--all", "--limit", "-3")),
    Case("flag-limit-not-a-number", "--limit", None, None, args=("--all", "--limit", "ten")),  # click's check
    Case("flag-max-connections-zero", C, None, "--max-connections", args=("--all", "--max-connections", "0")),
    Case("flag-workers-zero", C, None, "--workers", args=("--all", "--workers", "0")),
    Case("flag-request-timeout-zero", C, None, "--request-timeout", args=("--all", "--request-timeout", "0")),
    Case("flag-max-tokens-negative", C, None, "--max-tokens", args=("--all", "--max-tokens", "-1")),
    Case("flag-temperature-nan", C, None, "--temperature", args=("--all", "--temperature", "nan")),
    Case("flag-multiplier-nan", C, None, "--multiplier", args=("--multiplier", "nan")),
    Case("flag-multiplier-not-deployed", D, None, "--multiplier", args=("--multiplier", "7"), says="no deployment"),
    Case("flag-all-and-multiplier", C, None, "--multiplier", args=("--all", "--multiplier", "0.0")),
    Case("flag-no-multiplier-chosen", C, None, "--multiplier", args=()),
    Case("flag-shard-out-of-range", C, None, "--shard", args=("--all", "--shard", "3/2")),
    Case("flag-shard-malformed", C, None, "--shard", args=("--all", "--shard", "half")),
    Case("flag-unknown-benchmark", C, None, "--benchmark", args=("--all", "--benchmark", "Nope")),
    Case("flag-unknown-category", C, None, "--category", args=("--all", "--category", "Nope")),
    Case("flag-unknown-sandbox", "--sandbox", None, None, args=("--all", "--sandbox", "vm")),  # click's check
]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET_KEY_VAR, raising=False)
    good_deployments = [e.deployment_line() for e in endpoints]
    deployments, benchmarks, logs = tmp_path / D, tmp_path / B, tmp_path / "logs"
    deployments.write_bytes(case.deployments(good_deployments) if case.deployments else jsonl(*good_deployments))
    benchmarks.write_bytes(case.benchmarks(good_benchmarks()) if case.benchmarks else jsonl(*good_benchmarks()))
    before_files = files_under(tmp_path)
    before_requests = [(e.stats.requests, e.stats.model_list_requests) for e in endpoints]

    # the case's flags last, so that they win over the defaults given here
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
            "--log-root",
            str(logs),
            "--workers",
            "1",
            *case.args,
        ],
    )

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, result.stderr
    message = errors[0]
    if not message.startswith("Error: Invalid value"):  # click's own type checks print usage lines too
        assert result.stderr.strip() == message, "more than one line"
    assert case.where in message, message
    if case.line is not None:
        assert f"line {case.line}" in message, message
    if case.field is not None:
        assert f"'{case.field}'" in message, message
    assert case.says in message, message
    assert CREDENTIAL not in result.output
    # nothing written, nothing sent
    assert files_under(tmp_path) == before_files
    assert not logs.exists()
    assert [(e.stats.requests, e.stats.model_list_requests) for e in endpoints] == before_requests


def test_there_are_at_least_25_cases() -> None:
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert {D, B, C} <= {c.where for c in CASES}


# ---------------------------------------------------------------- damaged logs


def test_aggregate_skips_truncated_and_corrupt_logs_with_a_warning(tmp_path: Path, endpoints) -> None:
    deployments = tmp_path / D
    deployments.write_bytes(jsonl(*[e.deployment_line() for e in endpoints]))
    benchmarks = toy_benchmarks(tmp_path / B)
    logs = tmp_path / "logs"
    run = CliRunner().invoke(
        main,
        [
            "run",
            "--all",
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
            "--log-root",
            str(logs),
            "--workers",
            "1",
        ],
    )
    assert run.exit_code == 0, run.output

    truncated = next((logs / "Math" / "multiplier_1.0").glob("*.eval"))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    corrupt = logs / "Knowledge" / "multiplier_1.0" / "2026-01-01T00-00-00+00-00_capitals_corrupt.eval"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    empty = logs / "Knowledge" / "multiplier_0.0" / "2026-01-01T00-00-00+00-00_capitals_empty.eval"
    empty.write_bytes(b"")

    output = tmp_path / "out.csv"
    result = CliRunner().invoke(
        main,
        [
            "aggregate",
            "--log-root",
            str(logs),
            "--output",
            str(output),
            "--deployments",
            str(deployments),
            "--benchmarks",
            str(benchmarks),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipped")]
    for damaged in (truncated, corrupt, empty):
        assert sum(damaged.name in line for line in warnings) == 1, (damaged.name, result.stderr)

    frame = pd.read_csv(output, dtype={"multiplier": str})
    rows = {(r.benchmark, float(r.multiplier)): r for r in frame.itertuples()}
    # the three intact successful logs are all there, with their scores
    for cell in [("Arithmetic", 0.0), ("Capitals", 0.0), ("Capitals", 1.0)]:
        assert rows[cell].status == "success", cell
        assert rows[cell].accuracy == pytest.approx(expected_accuracy(cell[1]))
    # the cell whose only log was truncated is listed as missing, not dropped silently
    assert rows[("Arithmetic", 1.0)].status == "missing"
    assert "missing: Arithmetic at multiplier 1.0" in result.output
