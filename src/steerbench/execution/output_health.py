"""Records each sample's output health while a cell runs, into a sidecar next to the cell's log.

An Inspect hook (inspect_ai.hooks) sees every sample of a steerbench eval as it ends, with its
final output in memory: the record (results/health.py: truncated, empty, repetition, output
tokens of the final answer) costs about a millisecond per 1,000 characters of answer (the
repetition measure; bench/repetition.py) and no read of the log. For a multi-turn task
(Sycophancy) the sample's output is its last steered answer (the grader's answers never are).
When the task ends the records go into `<log>.eval.health.jsonl` (results.health.sidecar_path).

Samples Inspect did not run but reused from an interrupted attempt of the same cell never
reach the hook; when the task ends, `complete` reads just those samples from the finished log.
A sample that errored has no final answer and no record. Nothing here can fail a run: a
sidecar that cannot be written only leaves the cell's health columns empty.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from ..logs.contract import STEERBENCH_METADATA
from ..logs.sidecars import write_text
from ..results.health import SIDECAR_SUFFIX, dumps_sidecar, sample_record, sidecar_path

logger = logging.getLogger(__name__)
HOOK_NAME = "steerbench_output_health"


def record_of(sample: Any) -> dict[str, Any] | None:
    """The health record of one EvalSample (None for a sample that errored)."""
    if getattr(sample, "error", None) is not None:
        return None
    output = sample.output
    choices = getattr(output, "choices", None) or []
    text = output.completion if output is not None else ""
    stop = choices[0].stop_reason if choices else None
    usage = getattr(output, "usage", None)
    tokens = usage.output_tokens if usage is not None else None
    return sample_record(text, stop, tokens, sample.id, sample.epoch)


class Recorder:
    """The records of the steerbench evals running in this process, by eval id."""

    def __init__(self) -> None:
        self.active = False
        self.running: dict[str, list[dict[str, Any]]] = {}

    def start(self, eval_id: str, metadata: dict[str, Any] | None) -> None:
        if STEERBENCH_METADATA in (metadata or {}):
            self.running[eval_id] = []

    def sample(self, eval_id: str, sample: Any) -> None:
        records = self.running.get(eval_id)
        if records is not None and (record := record_of(sample)) is not None:
            records.append(record)

    def finish(self, eval_id: str, log: Any) -> None:
        records = self.running.pop(eval_id, None)
        location = getattr(log, "location", None)
        if records is None or not location:
            return
        complete(log, records)


RECORDER = Recorder()
_registered = False


def _register() -> None:
    """Register the hook once per process (Inspect instantiates it on registration)."""
    global _registered
    if _registered:
        return
    from inspect_ai.hooks import Hooks, SampleEnd, TaskEnd, TaskStart, hooks

    @hooks(name=HOOK_NAME, description="steerbench: output health of every sample, next to its log")
    class OutputHealthHooks(Hooks):
        def enabled(self) -> bool:
            return RECORDER.active

        async def on_task_start(self, data: TaskStart) -> None:
            RECORDER.start(data.eval_id, data.spec.metadata)

        async def on_sample_end(self, data: SampleEnd) -> None:
            RECORDER.sample(data.eval_id, data.sample)

        async def on_task_end(self, data: TaskEnd) -> None:
            RECORDER.finish(data.eval_id, data.log)

    _registered = True


def start_recording() -> Recorder:
    """Record the health of every steerbench sample this process runs from now on. Call it after
    the process's first get_model(), so that Inspect's start-up banner does not list the hook."""
    _register()
    RECORDER.active = True
    return RECORDER


def _write(location: str, records: Sequence[dict[str, Any]]) -> None:
    try:
        write_text(sidecar_path(location), dumps_sidecar(records))
    except Exception as e:  # the run goes on; this cell's health columns stay empty
        logger.warning("could not write the output health of %s: %s", location, e)


def complete(log: Any, records: list[dict[str, Any]]) -> None:
    """Write the sidecar of a finished log (an EvalLog, its header is enough) from the hook's records,
    first adding the samples Inspect reused from an interrupted attempt (the hook never saw them),
    and remove the sidecars of logs Inspect has deleted (a retried attempt's) in its folder."""
    location = log.location
    completed = log.results.completed_samples if getattr(log, "results", None) is not None else 0
    if len(records) < completed:
        try:
            _add_reused(location, records)
        except Exception as e:
            logger.warning("could not read the reused samples of %s: %s", location, e)
    _write(location, records)
    _remove_orphans(os.path.dirname(location))


def _add_reused(location: str, records: list[dict[str, Any]]) -> None:
    from inspect_ai.log import read_eval_log_sample, read_eval_log_sample_summaries

    have = {(r.get("id"), r.get("epoch")) for r in records}
    for summary in read_eval_log_sample_summaries(location):
        if summary.error or (str(summary.id), summary.epoch) in have:
            continue
        record = record_of(read_eval_log_sample(location, summary.id, summary.epoch))
        if record is not None:
            records.append(record)


def _remove_orphans(log_dir: str) -> None:
    if "://" in log_dir and not log_dir.startswith("file://"):
        return
    folder = log_dir.removeprefix("file://")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.endswith(SIDECAR_SUFFIX) and not os.path.exists(os.path.join(folder, name[: -len(SIDECAR_SUFFIX)])):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
