"""The replay journal (steerbench.execution.replay): a re-run after a hard kill gets the answers the
endpoint already gave from the journal, never from the endpoint, and each one goes back to
the sample and epoch that asked for it.

A hard kill is simulated by keeping the journal that a normal end deletes, then deleting the
logs, so that Inspect runs every sample again (test_faults.py kills a real run)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.helpers import write_jsonl

from steerbench.cli import main
from steerbench.execution.replay import JOURNAL_FOLDER, ReplayJournal
from steerbench.sim.simulator import SimulatedFleet

EPOCHS_TASK = """
from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def draws(count: int = 5) -> Task:
    samples = [Sample(id=n, input=f"Item {n}: draw a number.", target="draw") for n in range(1, count + 1)]
    return Task(dataset=samples, solver=generate(), scorer=includes(), epochs=Epochs(3))
"""


def draw_study(root: Path, fleet: SimulatedFleet) -> dict[str, Path]:
    task_file = root / "draws.py"
    task_file.write_text(EPOCHS_TASK)
    benchmarks = write_jsonl(
        root / "benchmarks.jsonl",
        [
            {"name": "Draws", "eval_name": f"{task_file}@draws", "category": "Misc", "task_args": {"count": 5}},
        ],
    )
    deployments = write_jsonl(root / "deployments.jsonl", [e.deployment_line() for e in fleet.endpoints])
    return {"deployments": deployments, "benchmarks": benchmarks, "logs": root / "logs"}


def run(study: dict[str, Path]) -> Any:
    return CliRunner().invoke(
        main,
        [
            "run",
            "--all",
            "--deployments",
            str(study["deployments"]),
            "--benchmarks",
            str(study["benchmarks"]),
            "--log-root",
            str(study["logs"]),
            "--workers",
            "1",
            "--max-connections",
            "3",
        ],
        catch_exceptions=False,
    )


def outputs(logs: Path) -> dict[tuple[int, int], str]:
    from inspect_ai.log import read_eval_log

    (log_file,) = logs.rglob("*.eval")
    log = read_eval_log(str(log_file))
    assert log.status == "success" and log.samples
    return {(int(s.id), s.epoch): s.output.completion for s in log.samples}


@pytest.fixture
def counter_fleet():
    """Every answer is different ("draw N", N counting up), as at temperature > 0."""
    counter = itertools.count(1)

    def draw(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        item = re.search(r"Item (\d+)", messages[-1]["content"]).group(1)
        return f"item {item} draw {next(counter)}"

    with SimulatedFleet([0.0], draw) as fleet:
        yield fleet


def test_rerun_after_a_kill_replays_every_answer_to_its_own_sample_and_epoch(
    tmp_path: Path, counter_fleet: SimulatedFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = draw_study(tmp_path, counter_fleet)
    endpoint = counter_fleet.endpoints[0]
    keep_journal = ReplayJournal.close
    monkeypatch.setattr(ReplayJournal, "close", lambda self, finished: keep_journal(self, finished=False))

    first = run(study)
    assert first.exit_code == 0, first.output
    answered = endpoint.stats.completions
    assert answered == 15  # 5 samples x 3 epochs
    before = outputs(study["logs"])
    assert len(set(before.values())) == 15  # every epoch drew its own answer
    (journal,) = study["logs"].rglob(f"{JOURNAL_FOLDER}/*.jsonl")
    assert len(journal.read_text().splitlines()) == 15
    assert endpoint.key not in journal.read_text()

    # as after a kill before Inspect wrote the samples: no log, the journal left behind
    for log_file in study["logs"].rglob("*.eval"):
        log_file.unlink()
    # answers are matched by key, not by order: reversed, each still finds its sample and epoch
    journal.write_text("".join(reversed(journal.read_text().splitlines(keepends=True))))
    with journal.open("ab") as torn:  # a kill in the middle of a write
        torn.write(b'{"k": "abc", "s": 200, "t": "app')
    second = run(study)
    assert second.exit_code == 0, second.output
    assert "15 answers came from the replay journal" in second.output
    assert endpoint.stats.completions == answered  # the endpoint was not asked again
    assert outputs(study["logs"]) == before  # each answer went back to its sample and epoch


def test_normal_end_deletes_the_journal_and_a_new_run_asks_the_endpoint(
    tmp_path: Path, counter_fleet: SimulatedFleet
) -> None:
    study = draw_study(tmp_path, counter_fleet)
    endpoint = counter_fleet.endpoints[0]
    first = run(study)
    assert first.exit_code == 0, first.output
    assert not list(study["logs"].rglob(JOURNAL_FOLDER))
    for log_file in study["logs"].rglob("*.eval"):
        log_file.unlink()
    second = run(study)
    assert second.exit_code == 0, second.output
    assert "replay journal" not in second.output
    assert endpoint.stats.completions == 30
    assert not list(study["logs"].rglob(JOURNAL_FOLDER))
