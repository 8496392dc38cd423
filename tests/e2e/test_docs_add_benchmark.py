"""docs/how-to/add-benchmark.md, run as written: the task file, the benchmarks.jsonl line and the
commands are taken from the page, and run against simulated endpoints on loopback."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
from click.testing import CliRunner
from tests.docs_pages import DOCS, blocks, shell_commands

from steerbench.cli import main
from steerbench.sim.simulator import SimulatedFleet, message_text

PAGE = DOCS / "how-to" / "add-benchmark.md"
MULTIPLIERS = [-1.0, 0.0, 1.0]


def squares_responder(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    """Right on every square at 0; steered, wrong from 16 on (5 of the page's 10 questions)."""
    n = int(re.search(r"What is (\d+) squared\?", message_text(messages[-1])).group(1))
    return str(n * n) if multiplier == 0 or n < 16 else str(n * n + 1)


def _page_block(language: str, title: str = "", contains: str = "") -> str:
    for block in blocks(PAGE):
        if block.language == language and block.title == title and contains in block.text:
            return block.text
    raise AssertionError(f"{PAGE.name} has no {language} block {title!r} containing {contains!r}")


def test_the_add_a_benchmark_page_runs_as_written(tmp_path: Path) -> None:
    Path("my_tasks.py").write_text(_page_block("python", "my_tasks.py") + "\n")
    Path("benchmarks.jsonl").write_text(_page_block("jsonl", "benchmarks.jsonl", "my_tasks.py@squares") + "\n")
    commands = shell_commands(_page_block("bash", contains="--benchmark Squares"))
    assert [argv[:2] for argv in commands] == [["steerbench", "run"]] * 2 + [
        ["steerbench", "aggregate"],
        ["steerbench", "report"],
    ]

    with SimulatedFleet(MULTIPLIERS, squares_responder) as fleet:
        fleet.write_deployments(Path("deployments.jsonl"))
        for argv in commands:
            result = CliRunner().invoke(main, argv[1:], catch_exceptions=False)
            assert result.exit_code == 0, f"{shlex.join(argv)}:\n{result.output}"
            if "--dry-run" in argv:
                planned = [line for line in result.output.splitlines() if "Squares" in line]
                assert len(planned) >= len(MULTIPLIERS), result.output  # one cell per multiplier
        assert sum(e.stats.completions for e in fleet.endpoints) == 10 * len(MULTIPLIERS)  # dry-run sent nothing

    frame = pd.read_csv("data/aggregated_inspect_logs.csv", dtype={"multiplier": str})
    squares = frame[frame["benchmark"] == "Squares"].set_index("multiplier")
    assert sorted(squares.index) == ["-1.0", "0.0", "1.0"]
    assert squares.loc["0.0", "accuracy"] == 1.0
    assert squares.loc["1.0", "accuracy"] == 0.5
    assert squares.loc["-1.0", "accuracy"] == 0.5
    assert Path("outputs/figures/accuracy_by_benchmark.png").stat().st_size > 0
