"""Output health: what steering does to the text of the steered model's answers. Pure stdlib + numpy.

Computed from the steered model's own final answer (never the grader's). For a multi-turn
task (Sycophancy) the "final answer" is the sample's last steered answer. A sample that
errored has no final answer and gets no record.

Per sample (one record per sample and epoch, see `sample_record`):

- truncated: the answer's stop reason is `max_tokens` or `model_length` (Inspect's names for an
  answer that stopped at the token limit; an OpenAI-compatible `finish_reason: length` arrives as
  `max_tokens`).
- empty: the answer's text is empty or whitespace only (`text.strip() == ""`; no text at all counts
  as empty).
- repetition: the share of the answer's characters that lie in a stretch the answer has already
  said at least twice before. The text is taken as it came, character by character (Python str
  code points: letters of any script, emoji, digits, punctuation, spaces and newlines alike; no
  lowercasing, no normalisation). Its windows are the n - 15 stretches of 16 consecutive characters
  of an answer of n characters, taken from the start; a window is *repeated* when the same 16
  characters occurred at least twice at earlier starting positions (overlaps count: in
  "🌊🌊🌊..." every window is the same one). repetition = (characters covered by at least one
  repeated window) / n, so in [0, 1]; 0 for an answer shorter than 16 characters, and for any
  answer with no 16-character stretch said three times. A loop of period p scores about
  1 - 2 p / n ("a b c d" ten times, 79 characters of period 8: windows from position 16 on are
  repeated, so 63 of 79 characters, 0.797); "def\\n\\n" or an emoji run to the token limit scores
  above 0.9. Why these choices: characters, not words, so that emoji, code, whitespace runs and
  scripts without spaces count; 16 characters so that common short fragments ("    return ",
  "numbers[i]") are never a repeat on their own; a third occurrence, not a second, so that an
  answer restating its function signature or one repeated line is not called a loop; coverage of
  characters, not a count of windows, so that a loop whose lines differ in a counter
  ("1. The answer is 7.\\n2. The answer is 14.\\n...") still scores high. What it cannot see: a
  run that never repeats a 16-character stretch (counting "1, 2, 3, ..." upwards); the truncated
  rate sees those when they run into the token limit. Measured on tests/fixtures/health_answers.jsonl
  (loops of every kind above: 0.62 to 1.00; healthy HumanEval solutions, prose and short answers:
  0 to 0.49, the highest being HumanEval/81's twelve-branch if/elif chain).
- output tokens: the output tokens of that final answer as the endpoint reported them (its
  usage); None when the endpoint reported no usage.

Per cell (the CSV columns, see `cell_health`), over the cell's records:

- output_truncated_rate: mean of truncated (0/1);
- output_empty_rate: mean of empty (0/1);
- output_repetition: mean of repetition (sidecars of version 1 measured word 4-grams instead:
  their repetition is not read, so the column stays empty for them);
- output_tokens_mean: mean of output tokens over the records that have them.

A cell without records (logs written before steerbench recorded health) has all four None,
which the CSV writes as empty.

The record is a small dict, cheap to build during the run. A log's records are kept in a
sidecar next to it (`sidecar_path`: `<log>.eval.health.jsonl`), JSON lines whose first line holds
the cell's four values, so that `aggregate` reads one short line per log and never the log's
samples; the report reads the records for its paired tests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

HEALTH_COLUMNS = ["output_truncated_rate", "output_empty_rate", "output_repetition", "output_tokens_mean"]
TRUNCATED_STOP_REASONS = frozenset({"max_tokens", "model_length"})
REPEAT_WINDOW = 16  # characters in a window
REPEAT_SEEN = 2  # a window is repeated once it occurred this many times before
# 2: repetition = share of characters in a 16-character stretch said at least twice before.
# 1 measured the share of repeated word 4-grams (before the character measure); its values are not read.
RECORD_VERSION = 2
SIDECAR_SUFFIX = ".health.jsonl"  # not .json: Inspect would take "<timestamp>_....json" for a log
SIDECAR_FORMAT = "steerbench-output-health"
METADATA_KEY = "steerbench_health"  # the record's key when it is kept in sample metadata

# ---------------------------------------------------------------- one answer


def is_truncated(stop_reason: str | None) -> bool:
    return stop_reason in TRUNCATED_STOP_REASONS


def is_empty(text: str | None) -> bool:
    return text is None or text.strip() == ""


def repetition(text: str | None, window: int = REPEAT_WINDOW, seen: int = REPEAT_SEEN) -> float:
    """The share of the text's characters covered by a `window`-character stretch that occurred at
    least `seen` times before (module docstring); 0 for a text shorter than `window`."""
    if not text or len(text) < window:
        return 0.0
    counts: dict[str, int] = {}
    covered = 0
    covered_to = 0  # windows come in order, so the covered characters form runs ending here
    for start in range(len(text) - window + 1):
        stretch = text[start : start + window]
        before = counts.get(stretch, 0)
        if before >= seen:
            end = start + window
            covered += end - max(start, covered_to)
            covered_to = end
        counts[stretch] = before + 1
    return covered / len(text)


def sample_record(
    text: str | None,
    stop_reason: str | None,
    output_tokens: int | None,
    sample_id: Any = None,
    epoch: int | None = None,
) -> dict[str, Any]:
    """One sample's health, as a small JSON-ready dict:
    {"id": "7", "epoch": 1, "stop": "max_tokens", "truncated": 1, "empty": 0, "repetition": 0.5, "tokens": 512}
    ("id"/"epoch" only when given; tokens None when unknown)."""
    record: dict[str, Any] = {}
    if sample_id is not None:
        record["id"] = str(sample_id)
    if epoch is not None:
        record["epoch"] = int(epoch)
    record["stop"] = stop_reason
    record["truncated"] = int(is_truncated(stop_reason))
    record["empty"] = int(is_empty(text))
    record["repetition"] = repetition(text)
    record["tokens"] = None if output_tokens is None else int(output_tokens)
    return record


# ---------------------------------------------------------------- one cell


def cell_health(records: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """The four CSV columns of one cell from its records (all None when there are none)."""
    records = list(records)
    if not records:
        return dict.fromkeys(HEALTH_COLUMNS)
    tokens = [r["tokens"] for r in records if r.get("tokens") is not None]
    return {
        "output_truncated_rate": _mean(float(r["truncated"]) for r in records),
        "output_empty_rate": _mean(float(r["empty"]) for r in records),
        "output_repetition": _mean(float(r["repetition"]) for r in records),
        "output_tokens_mean": _mean(float(t) for t in tokens) if tokens else None,
    }


def _mean(values: Iterable[float]) -> float:
    array = np.fromiter(values, dtype=float)
    return float(array.mean()) if array.size else math.nan


def by_sample(records: Iterable[Mapping[str, Any]], measure: str) -> dict[str, float]:
    """sample id -> that sample's `measure` ("truncated", "empty", "repetition" or "tokens"),
    the mean over its epochs (as Inspect reduces scores); records without an id or the
    measure are left out. For the paired tests against multiplier 0."""
    sums: dict[str, list[float]] = {}
    for record in records:
        value = record.get(measure)
        if record.get("id") is None or value is None:
            continue
        entry = sums.setdefault(str(record["id"]), [0.0, 0])
        entry[0] += float(value)
        entry[1] += 1
    return {sample: total / count for sample, (total, count) in sums.items()}


# ---------------------------------------------------------------- stored next to the log


def sidecar_path(log_file: str) -> str:
    """Where a log's health records are kept: `<log>.eval` -> `<log>.eval.health.jsonl`."""
    return log_file + SIDECAR_SUFFIX


def sidecar_header(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sidecar's first line: the cell's four values (all that aggregate reads) and the record count."""
    return {
        "format": SIDECAR_FORMAT,
        "version": RECORD_VERSION,
        "n_records": len(records),
        "cell": cell_health(records),
    }


def dumps_sidecar(records: Sequence[Mapping[str, Any]]) -> str:
    """The sidecar as JSON lines: the header line (`sidecar_header`), then one record per line, so
    that aggregate reads one short line however many samples the log has."""
    lines = [sidecar_header(records), *records]
    return "".join(json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n" for line in lines)


def parse_sidecar_header(line: str | bytes) -> dict[str, Any] | None:
    """A sidecar's first line, or None when it is not one (another format, a newer version, torn)."""
    try:
        header = json.loads(line)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("format") != SIDECAR_FORMAT:
        return None
    if not isinstance(header.get("version"), int) or header["version"] > RECORD_VERSION:
        return None
    return header


def parse_sidecar(text: str) -> dict[str, Any] | None:
    """A whole sidecar: its header with the records under "samples" (None when it is not one).
    The records of a version-1 sidecar lose their "repetition" (word 4-grams, another measure)."""
    first, _, rest = text.partition("\n")
    header = parse_sidecar_header(first)
    if header is None:
        return None
    old_measure = _old_repetition(header)
    samples = []
    for line in rest.splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:  # a torn line: the header's cell values still stand
                continue
            if old_measure and isinstance(record, dict):
                record.pop("repetition", None)
            samples.append(record)
    return {**header, "samples": samples}


def cell_columns(header: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The four CSV columns from a parsed sidecar header (all None without one; a version-1
    sidecar's output_repetition is None: it measured word 4-grams, which this column no longer is)."""
    cell = (header or {}).get("cell") or {}
    columns = {c: (float(cell[c]) if _is_number(cell.get(c)) else None) for c in HEALTH_COLUMNS}
    if header is not None and _old_repetition(header):
        columns["output_repetition"] = None
    return columns


def _old_repetition(header: Mapping[str, Any]) -> bool:
    return int(header.get("version", RECORD_VERSION)) < 2


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
