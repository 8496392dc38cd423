"""Output health of single answers and of cells, by hand (steerbench.results.health)."""

from __future__ import annotations

import json

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
    words,
)


def test_truncated_means_the_answer_stopped_at_the_token_limit() -> None:
    assert is_truncated("max_tokens") and is_truncated("model_length")
    assert not any(is_truncated(r) for r in ("stop", "tool_calls", "content_filter", "unknown", None))


def test_empty_means_no_text_or_only_whitespace() -> None:
    assert is_empty("") and is_empty(" \n\t ") and is_empty(None)
    assert not is_empty(" x ") and not is_empty(".")


def test_words_are_lowercased_word_character_runs() -> None:
    assert words("Hello, World! it's 42_x") == ["hello", "world", "it", "s", "42_x"]
    assert words("Über straße") == ["über", "straße"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0.0),
        ("one two three", 0.0),  # fewer than 4 words: no 4-gram
        ("the the the the", 0.0),  # one 4-gram, distinct
        ("the the the the the", 0.5),  # 2 windows, 1 distinct
        ("a b c d a b c d a b c d", 1 - 4 / 9),  # 9 windows, 4 distinct
        ("Hello, world! Hello, world! Hello, world!", 1 - 2 / 3),  # case and punctuation do not count
        ("one two three four five six seven", 0.0),
    ],
)
def test_repetition_is_the_share_of_repeated_word_4_grams(text: str, expected: float) -> None:
    assert repetition(text) == pytest.approx(expected, abs=1e-12)


def test_a_sample_record_is_a_small_json_dict() -> None:
    record = sample_record("a b c d a b c d a b c d", "max_tokens", 512, sample_id=7, epoch=1)
    assert record == {"id": "7", "epoch": 1, "stop": "max_tokens", "truncated": 1, "empty": 0,
                      "repetition": pytest.approx(5 / 9, abs=1e-15), "tokens": 512}
    assert sample_record("  ", "stop", None) == {"stop": "stop", "truncated": 0, "empty": 1,
                                                  "repetition": 0.0, "tokens": None}
    assert json.loads(json.dumps(record)) == record


def test_cell_health_gives_the_four_csv_columns() -> None:
    records = [
        sample_record("fine answer", "stop", 10, 1),
        sample_record("", "stop", 0, 2),
        sample_record("the the the the the", "max_tokens", 100, 3),
        sample_record("x", "model_length", None, 4),  # no usage: left out of the token mean
    ]
    assert cell_health(records) == {
        "output_truncated_rate": 0.5,
        "output_empty_rate": 0.25,
        "output_repetition": 0.125,
        "output_tokens_mean": pytest.approx(110 / 3),
    }
    assert cell_health([]) == dict.fromkeys(HEALTH_COLUMNS)
    assert cell_health([sample_record("x", "stop", None)])["output_tokens_mean"] is None


def test_by_sample_averages_epochs() -> None:
    records = [sample_record("", "stop", 1, "a", 1), sample_record("x", "stop", 3, "a", 2),
               sample_record("x", "max_tokens", 5, "b", 1), sample_record("x", "stop", 5)]  # no id: left out
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
    assert cell_columns(header) == {"output_truncated_rate": 0.5, "output_empty_rate": 0.5,
                                    "output_repetition": 0.0, "output_tokens_mean": 3.0}
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
