"""The repetition measure on real answers of a real steered model: tests/fixtures/real_model_answers.jsonl.

The answers are one run of the real-model lane (tests/real_model, docs/tutorial/real-model.md):
SmolLM2-135M-Instruct on the first 20 HumanEval problems, max_tokens 256, greedy. "degenerate": every
answer at multipliers -0.8 and 0.8 (residual-norm units), all cut at the token limit ("that it is that
it is ..." runs at -0.8; newline runs and "**\\n\\n" runs at 0.8). "healthy": every unsteered (m = 0)
answer that stopped by itself. The unsteered answers cut at the token limit are left out: some are
loops of their own (a repeated test comment), some are long explanations.
"""

from __future__ import annotations

import json
from pathlib import Path

from steerbench.results.health import cell_health, repetition, sample_record

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real_model_answers.jsonl"


def answers() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_the_fixture_holds_both_sides_of_zero_and_healthy_answers() -> None:
    labels = [(row["label"], row["multiplier"]) for row in answers()]
    assert labels.count(("degenerate", "-0.8")) == 20 and labels.count(("degenerate", "0.8")) == 20
    assert labels.count(("healthy", "0")) == 12


def test_every_degenerate_answer_is_more_repetitive_than_every_healthy_one() -> None:
    scores = {"degenerate": [], "healthy": []}
    for row in answers():
        scores[row["label"]].append((repetition(row["text"]), row["multiplier"], row["id"]))
    least_degenerate, most_healthy = min(scores["degenerate"]), max(scores["healthy"])
    assert least_degenerate[0] > most_healthy[0], (least_degenerate, most_healthy)


def test_each_degenerate_cell_scores_far_above_the_healthy_answers() -> None:
    def cell(label: str, multiplier: str) -> dict:
        records = [
            sample_record(row["text"], row["stop"], None)
            for row in answers()
            if (row["label"], row["multiplier"]) == (label, multiplier)
        ]
        return cell_health(records)

    healthy = cell("healthy", "0")
    assert healthy["output_truncated_rate"] == 0 and healthy["output_repetition"] < 0.1
    for multiplier in ("-0.8", "0.8"):
        degenerate = cell("degenerate", multiplier)
        assert degenerate["output_truncated_rate"] == 1
        assert degenerate["output_repetition"] > 0.6, (multiplier, degenerate)
