"""Reading only the header of Inspect logs, fast, for `steerbench aggregate` and `status`.

`read_eval_log(header_only=True)` also validates `reductions.json`, which holds one score per
sample: on a 2,000-sample log that is most of the time it takes (about 100 ms a log). A
finished `.eval` log carries everything aggregate needs in `header.json`; this reads that
member alone and validates it as Inspect does. Anything else (a log still running, with no
`header.json`; a `.json` log; a remote log) goes through Inspect's own reader.
"""

from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

HEADER_MEMBER = "header.json"
# Reading many files is partly waiting on the disk (or network): overlap it.
READ_THREADS = 8


def _local_eval_path(location: str) -> str | None:
    if location.startswith("file://"):
        location = location[len("file://") :]
    if "://" in location or not location.endswith(".eval") or not os.path.isfile(location):
        return None
    return location


def _header_json(path: str) -> dict[str, Any] | None:
    try:
        import zipfile_zstd  # noqa: F401  (Inspect's dependency: zipfile learns zstandard)
    except ImportError:  # pragma: no cover
        pass
    with zipfile.ZipFile(path) as archive:
        try:
            data = archive.read(HEADER_MEMBER)
        except KeyError:
            return None  # a log still being written: only its journal so far
    header = json.loads(data)
    return header if isinstance(header, dict) else None


def read_log_header(location: str) -> Any:
    """An EvalLog without samples or reductions, as read_eval_log(header_only=True) gives."""
    from inspect_ai.log import EvalLog, read_eval_log

    path = _local_eval_path(location)
    header = _header_json(path) if path else None
    if header is None:
        return read_eval_log(location, header_only=True)
    header.pop("reductions", None)
    from ..boundary.inspect_state import deserializing_context

    log = EvalLog.model_validate(header, context=deserializing_context())  # as Inspect's reader validates a header
    log.location = location
    return log


def read_log_headers(locations: list[str]) -> list[Any]:
    """Each log's header, or the exception reading it raised, in the order given."""

    def read(location: str) -> Any:
        try:
            return read_log_header(location)
        except Exception as e:  # reported per log by the caller
            return e

    if len(locations) <= 1:
        return [read(location) for location in locations]
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        return list(pool.map(read, locations))
