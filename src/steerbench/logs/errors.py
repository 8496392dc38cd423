"""Why a log failed, in one line: the first line of its error, or a count of failed samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def first_line(text: str | None, default: str = "") -> str:
    """The first line of an error text, or `default` when there is none."""
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else default


@dataclass(frozen=True)
class SampleFailures:
    failed: int
    total: int
    first: str

    @property
    def reason(self) -> str:
        return f"{self.failed} of {self.total} samples failed, first: {self.first}"


def sample_failures(location: str | None) -> SampleFailures | None:
    """Why an eval ended in error when it has no error of its own: too many of its samples
    failed (e.g. every request rejected with HTTP 401). Read from its sample summaries, only
    for such logs."""
    if not location:
        return None
    from inspect_ai.log import read_eval_log_sample_summaries

    try:
        summaries = read_eval_log_sample_summaries(location)
    except Exception:
        return None
    failed = [s for s in summaries if s.error]
    if not failed:
        return None
    return SampleFailures(len(failed), len(summaries), first_line(str(failed[0].error), "error"))


def log_error(log: Any) -> tuple[str | None, SampleFailures | None]:
    """(one-line reason, sample failures) of an EvalLog: the first line of its error; for an
    error log without one, how many samples failed and the first one's error; else (None, None)."""
    if log.error is not None:
        return first_line(log.error.message, "error"), None
    if log.status == "error":
        failures = sample_failures(log.location)
        if failures is not None:
            return failures.reason, failures
    return None, None
