"""Output health of single answers and of cells, by hand (steerbench.results.health)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerbench.results.health import (
    HEALTH_COLUMNS,
    by_sample,
    cell_columns,
    cell_health,
    dumps_sidecar,
    is_empty,
    is_truncated,
    parse_sidecar,
    parse_sidecar_header,
    repetition,
    sample_record,
    sidecar_path,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "health_answers.jsonl"


def test_truncated_means_the_answer_stopped_at_the_token_limit() -> None:
    assert is_truncated("max_tokens") and is_truncated("model_length")
    assert not any(is_truncated(r) for r in ("stop", "tool_calls", "content_filter", "unknown", None))


def test_empty_means_no_text_or_only_whitespace() -> None:
    assert is_empty("") and is_empty(" \n\t ") and is_empty(None)
    assert not is_empty(" x ") and not is_empty(".")


LOOP = " ".join(["a b c d"] * 10)  # 79 characters of period 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0.0),
        (None, 0.0),
        ("B", 0.0),
        ("fifteen chars!!", 0.0),  # shorter than one window
        ("x" * 17, 0.0),  # two windows, the second seen once before: not yet repeated
        ("x" * 18, 16 / 18),  # the third window (from character 2) is the third occurrence
        ("x" * 100, 98 / 100),  # a loop of period p over n characters: 1 - 2p/n
        # period 8: window j is a third occurrence from j = 16 on, covering characters 16..78
        (LOOP, 63 / 79),
        ("yes, " * 10, 40 / 50),  # period 5: third occurrence from j = 10
        (", ".join(["yes"] * 5), 0.0),  # 23 characters: no window occurs three times
        ("🌊" * 300, 1 - 2 / 300),  # one code point per emoji; windows from 2 on
        ("def\n\n" * 150, 1 - 10 / 750),
        ("A" * 16 + "-" + "A" * 16 + "-" + "A" * 16, 16 / 50),  # the third "AAA..." covers 16 characters
        ("Hello, world! " * 3, 0.0),  # 42 characters, period 14: a third occurrence needs j >= 28 > 26
        ("Hello, world! " * 4, 28 / 56),
    ],
)
def test_repetition_is_the_share_of_characters_in_a_stretch_said_twice_before(
    text: str | None, expected: float
) -> None:
    assert repetition(text) == pytest.approx(expected, abs=1e-12)


def test_repetition_sees_case_and_every_script() -> None:
    assert repetition("abcdefghijklmnopqrstuvwxyz" * 3) > 0.3
    # case is part of the text: the third stretch differs in case, so it is not a repeat
    assert repetition("abcdefghijklmnop" * 2 + "ABCDEFGHIJKLMNOP") == 0.0
    for unit in ("这是一个很好的问题。", "Это хороший вопрос. ", "\t\n", "```\n\n", "🌊🐚"):
        assert repetition(unit * 60) > 0.9, unit


def fixture_answers() -> list[dict[str, str]]:
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert rows and all(set(row) == {"label", "text", "source"} for row in rows)
    assert {row["label"] for row in rows} == {"loop", "healthy"}
    return rows


def test_every_loop_of_the_fixture_ranks_above_every_healthy_answer() -> None:
    """Loops of every kind (emoji, def-newline, code fences, sentences in three scripts, whitespace,
    counters) against real HumanEval solutions (the most repetitive ones included), prose and
    short answers."""
    rows = fixture_answers()
    loops = sorted((repetition(r["text"]), r["source"]) for r in rows if r["label"] == "loop")
    healthy = sorted((repetition(r["text"]), r["source"]) for r in rows if r["label"] == "healthy")
    assert len(loops) >= 15 and len(healthy) >= 20
    assert loops[0][0] > healthy[-1][0], (loops[0], healthy[-1])
    # and by a margin, with short answers at exactly 0
    assert loops[0][0] - healthy[-1][0] > 0.1
    assert all(repetition(r["text"]) == 0.0 for r in rows if r["label"] == "healthy" and len(r["text"]) < 100)
    assert sum(value for value, _ in healthy) / len(healthy) < 0.1
    assert sum(value for value, _ in loops) / len(loops) > 0.85


def test_a_healthy_code_answer_stays_well_below_a_loop_at_any_length() -> None:
    rows = fixture_answers()
    code = [r["text"] for r in rows if r["label"] == "healthy" and r["text"].startswith("```python")]
    assert all(repetition(text) < 0.5 for text in code)
    # the same answer followed by a loop twice its length (a loop to the token limit): clearly above
    for text in code:
        assert repetition(text + "def\n\n" * (2 * len(text) // 5)) > max(0.65, repetition(text) + 0.3)


def test_a_sample_record_is_a_small_json_dict() -> None:
    record = sample_record(LOOP, "max_tokens", 512, sample_id=7, epoch=1)
    assert record == {
        "id": "7",
        "epoch": 1,
        "stop": "max_tokens",
        "truncated": 1,
        "empty": 0,
        "repetition": pytest.approx(63 / 79, abs=1e-15),
        "tokens": 512,
    }
    assert sample_record("  ", "stop", None) == {
        "stop": "stop",
        "truncated": 0,
        "empty": 1,
        "repetition": 0.0,
        "tokens": None,
    }
    assert json.loads(json.dumps(record)) == record


def test_cell_health_gives_the_four_csv_columns() -> None:
    records = [
        sample_record("fine answer", "stop", 10, 1),
        sample_record("", "stop", 0, 2),
        sample_record("x" * 100, "max_tokens", 100, 3),  # repetition 0.98
        sample_record("x", "model_length", None, 4),  # no usage: left out of the token mean
    ]
    assert cell_health(records) == {
        "output_truncated_rate": 0.5,
        "output_empty_rate": 0.25,
        "output_repetition": 0.98 / 4,
        "output_tokens_mean": pytest.approx(110 / 3),
    }
    assert cell_health([]) == dict.fromkeys(HEALTH_COLUMNS)
    assert cell_health([sample_record("x", "stop", None)])["output_tokens_mean"] is None


def test_by_sample_averages_epochs() -> None:
    records = [
        sample_record("", "stop", 1, "a", 1),
        sample_record("x", "stop", 3, "a", 2),
        sample_record("x", "max_tokens", 5, "b", 1),
        sample_record("x", "stop", 5),
    ]  # no id: left out
    assert by_sample(records, "empty") == {"a": 0.5, "b": 0.0}
    assert by_sample(records, "truncated") == {"a": 0.0, "b": 1.0}
    assert by_sample(records, "tokens") == {"a": 2.0, "b": 5.0}


def test_the_sidecar_round_trips_and_old_or_foreign_files_give_empty_columns() -> None:
    assert sidecar_path("logs/x/multiplier_0/a.eval") == "logs/x/multiplier_0/a.eval.health.jsonl"
    records = [sample_record("a", "stop", 2, 1), sample_record("", "max_tokens", 4, 2)]
    text = dumps_sidecar(records)
    assert len(text.splitlines()) == 3  # the header line, then one line per record
    header = parse_sidecar_header(text.splitlines()[0])
    assert header is not None and header["n_records"] == 2
    assert cell_columns(header) == {
        "output_truncated_rate": 0.5,
        "output_empty_rate": 0.5,
        "output_repetition": 0.0,
        "output_tokens_mean": 3.0,
    }
    document = parse_sidecar(text)
    assert document is not None and document["samples"] == records
    # a torn last line loses that record only
    assert parse_sidecar(text[:-5])["samples"] == records[:1]  # type: ignore[index]
    assert parse_sidecar("not json") is None
    assert parse_sidecar_header(json.dumps({"format": "other"})) is None
    assert parse_sidecar_header(json.dumps({"format": "steerbench-output-health", "version": 99})) is None
    assert cell_columns(None) == dict.fromkeys(HEALTH_COLUMNS)
    # a cell without records writes None (empty in the CSV), never NaN
    assert cell_columns(parse_sidecar_header(dumps_sidecar([]))) == dict.fromkeys(HEALTH_COLUMNS)


def test_a_version_1_sidecar_keeps_three_columns_and_drops_its_word_4_gram_repetition() -> None:
    """Sidecars written before the character measure (version 1) stay readable: truncated, empty
    and tokens as they were; their repetition, another measure, is never mixed into the column."""
    old_records = [
        {"id": "1", "epoch": 1, "stop": "stop", "truncated": 0, "empty": 0, "repetition": 0.5, "tokens": 4},
        {"id": "2", "epoch": 1, "stop": "max_tokens", "truncated": 1, "empty": 0, "repetition": 0.1, "tokens": 8},
    ]
    header = {
        "format": "steerbench-output-health",
        "version": 1,
        "n_records": 2,
        "cell": {
            "output_truncated_rate": 0.5,
            "output_empty_rate": 0.0,
            "output_repetition": 0.3,
            "output_tokens_mean": 6.0,
        },
    }
    text = "".join(json.dumps(line) + "\n" for line in [header, *old_records])
    parsed = parse_sidecar_header(text.splitlines()[0])
    assert cell_columns(parsed) == {
        "output_truncated_rate": 0.5,
        "output_empty_rate": 0.0,
        "output_repetition": None,
        "output_tokens_mean": 6.0,
    }
    document = parse_sidecar(text)
    assert document is not None
    assert by_sample(document["samples"], "repetition") == {}
    assert by_sample(document["samples"], "truncated") == {"1": 0.0, "2": 1.0}
    # this version's sidecars carry their repetition
    new = parse_sidecar(dumps_sidecar([sample_record("x" * 20, "stop", 5, "1", 1)]))
    assert new is not None and new["version"] == 2 and by_sample(new["samples"], "repetition") == {"1": 0.9}
