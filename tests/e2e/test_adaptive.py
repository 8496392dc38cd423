"""`steerbench run --adaptive` end to end: real Inspect runs against SimulatedEndpoints on loopback.

The benchmark has 240 items; multiplier 0 and 0.5 answer every one right (no harm), -1 none
(every answer lost). With --first-batch 20 and --margin 0.05 the batches end at 20, 40, 80,
160, 240 samples: -1 must stop as harmful after its first batch, 0.5 as non-inferior once the
confidence sequence is below the margin (after 90 pairs at alpha 0.05/2, so at 160), and
multiplier 0 must run exactly the samples 0.5 ran.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from inspect_ai.log import read_eval_log
from tests.e2e.test_faults import run_in_process, run_subprocess, wait_until
from tests.helpers import write_jsonl

from steerbench.cli import main
from steerbench.core.adaptive import sample_order
from steerbench.results.scores import read_samples
from steerbench.sim.simulator import SimulatedFleet

ITEMS = 240
ADAPTIVE = ("--adaptive", "--first-batch", "20", "--margin", "0.05")
EXPECTED = {-1.0: ("harmful", 20), 0.0: ("baseline", 160), 0.5: ("non-inferior", 160)}

ITEMS_TASK = """
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import match
from inspect_ai.solver import generate


@task
def items(count: int = 30) -> Task:
    samples = [Sample(id=n, input=f"Item {n}: answer with {n}.", target=str(n)) for n in range(1, count + 1)]
    return Task(dataset=samples, solver=generate(), scorer=match(location="exact"))
"""


@pytest.fixture(autouse=True)
def _private_inspect_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def answer(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    item = re.search(r"Item (\d+)", messages[-1]["content"]).group(1)
    return "no idea" if multiplier < 0 else item


def adaptive_study(root: Path, fleet: SimulatedFleet) -> dict[str, Path]:
    task_file = root / "items.py"
    task_file.write_text(ITEMS_TASK)
    benchmarks = write_jsonl(
        root / "benchmarks.jsonl",
        [
            {"name": "Items", "eval_name": f"{task_file}@items", "category": "Misc", "task_args": {"count": ITEMS}},
        ],
    )
    fleet.write_deployments(root / "deployments.jsonl")
    return {"deployments": root / "deployments.jsonl", "benchmarks": benchmarks, "logs": root / "logs"}


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def status_cells(study: dict[str, Path]) -> dict[float, dict[str, Any]]:
    result = cli(
        "status",
        "--json",
        "--log-root",
        str(study["logs"]),
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
    )
    assert result.exit_code == 0, result.output
    return {float(c["multiplier"]): c for c in json.loads(result.stdout)["cells"]}


def assert_prefixes_of_one_order(logs: Path) -> None:
    """Every multiplier's samples are exactly the first `done` of the benchmark's one order."""
    order = sample_order(range(1, ITEMS + 1), 0, "Items", "")
    for value, (_, done) in EXPECTED.items():
        folder = logs / "Misc" / f"multiplier_{value}"
        # a killed run's unfinished log stays beside the one that resumed it: successful logs only
        done_logs = [
            str(p) for p in folder.rglob("*.eval") if read_eval_log(str(p), header_only=True).status == "success"
        ]
        ids = [str(i) for i, _ in read_samples(done_logs)]
        assert len(ids) == len(set(ids)) == done, (value, len(ids), len(set(ids)))
        assert set(ids) == set(order[:done]), value


def test_adaptive_run_stops_each_cell_when_decided(tmp_path: Path) -> None:
    with SimulatedFleet([-1.0, 0.0, 0.5], answer) as fleet:
        study = adaptive_study(tmp_path, fleet)
        result = run_in_process(study, *ADAPTIVE)
        assert result.exit_code == 0, result.output
        # stopped early: far fewer requests than 3 x 240, none asked twice
        assert {e.multiplier: e.stats.requests for e in fleet.endpoints} == {m: n for m, (_, n) in EXPECTED.items()}
        assert all(max(e.stats.prompts.values()) == 1 for e in fleet.endpoints)
        assert "every cell is decided" in result.output

        # a second run finds nothing open and sends nothing
        again = run_in_process(study, *ADAPTIVE)
        assert again.exit_code == 0, again.output
        assert sum(e.stats.requests for e in fleet.endpoints) == 340
        # resuming with another margin would judge earlier batches by a rule they were not run under
        other = run_in_process(study, "--adaptive", "--first-batch", "20", "--margin", "0.1")
        assert other.exit_code == 2 and "--margin 0.05" in other.output, other.output
        assert sum(e.stats.requests for e in fleet.endpoints) == 340

    assert_prefixes_of_one_order(study["logs"])
    cells = status_cells(study)
    assert {m: (c["adaptive_state"], c["adaptive_samples"]) for m, c in cells.items()} == EXPECTED
    assert all(c["adaptive_population"] == ITEMS for c in cells.values())
    assert cells[-1.0]["adaptive_low"] >= 0.05 and cells[0.5]["adaptive_high"] <= 0.05
    assert cells[0.5]["adaptive_low"] < 0 < cells[-1.0]["adaptive_high"]
    text = cli(
        "status",
        "--log-root",
        str(study["logs"]),
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
    ).output
    assert "harmful 20/240" in text and "non-inferior 160/240" in text

    csv, out = tmp_path / "data" / "agg.csv", tmp_path / "outputs"
    report = cli(
        "report",
        "--log-root",
        str(study["logs"]),
        "--csv",
        str(csv),
        "--out",
        str(out),
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
    )
    assert report.exit_code == 0, report.output
    import pandas as pd

    frame = pd.read_csv(csv).set_index("multiplier")
    assert frame.loc[0.5, "n_samples"] == 160 and frame.loc[0.5, "accuracy"] == 1.0
    assert frame.loc[-1.0, "n_samples"] == 20 and frame.loc[-1.0, "accuracy"] == 0.0
    assert frame.loc[-1.0, "adaptive_state"] == "harmful" and len(frame.loc[0.0, "batch_logs"].split(";")) == 4
    paired = pd.read_csv(csv.parent / "paired_differences.csv").set_index("multiplier")
    assert paired.loc[0.5, "n_pairs"] == 160 and paired.loc[-1.0, "n_pairs"] == 20
    figure = out / "figures" / "adaptive_harm_intervals.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "Adaptive study" in html and "2 of 2 cells stopped before" in html
    assert "sample count" not in report.output  # stopping early is not a flag


def test_killed_adaptive_run_resumes_without_asking_a_sample_twice(tmp_path: Path) -> None:
    """SIGKILL mid-batch, re-run: the same states as an uninterrupted run, every multiplier still a
    prefix of the one order, and no sample answered before the kill asked again (beyond the two
    in flight at the kill)."""
    connections = 2
    with SimulatedFleet([-1.0, 0.0, 0.5], answer, latency=0.02) as fleet:
        study = adaptive_study(tmp_path, fleet)
        zero = fleet.by_multiplier(0.0)
        process = run_subprocess(study, *ADAPTIVE, "--workers", "1", "--max-connections", str(connections), wait=False)
        try:  # mid-way through multiplier 0's batch [40, 80)
            wait_until(lambda: zero.stats.completions >= 60, process, "60 answers at multiplier 0")
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
        answered = {e.multiplier: set(e.stats.prompts) for e in fleet.endpoints}
        assert 60 <= len(answered[0.0]) < 160
        for endpoint in fleet.endpoints:
            endpoint.stats.prompts.clear()

        again = run_in_process(study, *ADAPTIVE, "--max-connections", str(connections))
        assert again.exit_code == 0, again.output
        for endpoint in fleet.endpoints:
            asked_again = answered[endpoint.multiplier] & set(endpoint.stats.prompts)
            assert len(asked_again) <= connections, (endpoint.multiplier, sorted(asked_again))
            assert max(endpoint.stats.prompts.values(), default=1) == 1
            assert len(answered[endpoint.multiplier] | set(endpoint.stats.prompts)) == EXPECTED[endpoint.multiplier][1]

    assert_prefixes_of_one_order(study["logs"])
    cells = status_cells(study)
    assert {m: (c["adaptive_state"], c["adaptive_samples"]) for m, c in cells.items()} == EXPECTED


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing sent


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--adaptive", "--limit", "5"), "--limit"),
        (("--adaptive", "--margin", "1.5"), "--margin"),
        (("--adaptive", "--precision", "0"), "--precision"),
        (("--adaptive", "--first-batch", "0"), "--first-batch"),
        (("--margin", "0.05"), "only with --adaptive"),
        (("--goal", "safe-range"), "only with --adaptive"),
    ],
)
def test_bad_adaptive_flags_exit_2_and_send_nothing(tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    with SimulatedFleet([-1.0, 0.0, 0.5], answer) as fleet:
        study = adaptive_study(tmp_path, fleet)
        result = run_in_process(study, *extra)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert sum(e.stats.requests for e in fleet.endpoints) == 0
    assert not study["logs"].exists()


def test_adaptive_needs_every_multiplier_and_a_zero(tmp_path: Path) -> None:
    with SimulatedFleet([-1.0, 0.0, 0.5], answer) as fleet:
        study = adaptive_study(tmp_path, fleet)
        result = cli(
            "run",
            "--multiplier",
            "0.5",
            "--adaptive",
            "--deployments",
            str(study["deployments"]),
            "--benchmarks",
            str(study["benchmarks"]),
            "--log-root",
            str(study["logs"]),
        )
        assert result.exit_code == 2 and "--all" in result.output, result.output
        assert sum(e.stats.requests for e in fleet.endpoints) == 0
    with SimulatedFleet([-1.0, 0.5], answer) as fleet:
        study = adaptive_study(tmp_path, fleet)
        result = run_in_process(study, "--adaptive")
        assert result.exit_code == 2 and "multiplier 0" in result.output, result.output
        assert sum(e.stats.requests for e in fleet.endpoints) == 0


def test_adaptive_into_a_root_with_a_full_run_is_refused(tmp_path: Path) -> None:
    with SimulatedFleet([-1.0, 0.0, 0.5], answer) as fleet:
        study = adaptive_study(tmp_path, fleet)
        write_jsonl(
            study["benchmarks"],
            [
                {
                    "name": "Items",
                    "eval_name": f"{tmp_path / 'items.py'}@items",
                    "category": "Misc",
                    "task_args": {"count": 3},
                }
            ],
        )
        assert run_in_process(study).exit_code == 0
        sent = sum(e.stats.requests for e in fleet.endpoints)
        logs_before = sorted(study["logs"].rglob("*.eval"))
        result = run_in_process(study, "--adaptive")
        assert result.exit_code == 2, result.output
        assert "non-adaptive run" in result.output and "--log-root" in result.output
        assert sum(e.stats.requests for e in fleet.endpoints) == sent
        assert sorted(study["logs"].rglob("*.eval")) == logs_before


def test_dry_run_shows_the_adaptive_plan_and_sends_nothing(tmp_path: Path) -> None:
    with SimulatedFleet([-1.0, 0.0, 0.5], answer) as fleet:
        study = adaptive_study(tmp_path, fleet)
        result = run_in_process(study, "--adaptive", "--dry-run", "--first-batch", "30")
        assert result.exit_code == 0, result.output
        assert "batches of 30, then doubling" in result.output and "0.05 / 2 cells = 2.50e-02 per cell" in result.output
        assert sum(e.stats.requests for e in fleet.endpoints) == 0


def test_goal_safe_range_stops_cells_beyond_the_first_harmful_one(tmp_path: Path) -> None:
    """-1 loses every answer (harmful after 20); -2, further out on that side, answers like 0 and
    would run on under the default goal, but cannot change the safe range: it stops at once."""

    def answer_sides(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        item = re.search(r"Item (\d+)", messages[-1]["content"]).group(1)
        return "no idea" if multiplier == -1.0 else item

    with SimulatedFleet([-2.0, -1.0, 0.0, 0.5], answer_sides) as fleet:
        study = adaptive_study(tmp_path, fleet)
        result = run_in_process(study, *ADAPTIVE, "--goal", "safe-range")
        assert result.exit_code == 0, result.output
        assert {e.multiplier: e.stats.requests for e in fleet.endpoints} == {-2.0: 20, -1.0: 20, 0.0: 160, 0.5: 160}
    cells = status_cells(study)
    assert cells[-2.0]["adaptive_state"] == "beyond-harmful" and cells[-1.0]["adaptive_state"] == "harmful"
