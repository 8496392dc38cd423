"""The replay journal: an endpoint's answers kept beside the logs, so a re-run after a kill does not ask again.

Every answer an endpoint gives is appended to a file in the log folder as it arrives, so
a run killed before Inspect wrote its finished samples (SIGKILL, OOM, a lost machine) does
not ask the endpoint for them again when it is re-run.

Why not Inspect's realtime sample buffer, which recovers the same samples: it writes every
event of every sample to SQLite and costs ~4 ms of CPU per sample, a quarter of what a
sample costs the orchestrator (bench/README.md). A journal line costs one hash and one
append. Inspect still re-runs those samples after a kill (solver and scorer, locally), but
their requests are answered from the journal, not by the GPU.

An answer is replayed only for the same request body to the same URL, from the same sample
and epoch of the same task (so epochs sampled at temperature > 0 stay independent), and
each journalled answer is replayed at most once. The journal is deleted when the folder's
eval set ends normally: Inspect has then written every finished sample into its logs.
Only local log folders have one; remote ones (s3://) keep Inspect's realtime buffer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL_FOLDER = ".steerbench-replay"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


class ReplayJournal:
    """One endpoint's journal; `open` it for a log folder, `close` it after the eval set."""

    def __init__(self, url: str, shard: tuple[int, int] | None = None):
        self.url = url
        self.shard = shard  # shards of one multiplier run side by side in one folder
        self.path: Path | None = None
        self._fd: int | None = None
        self._unused: dict[str, deque[Answer]] = {}
        self.replayed = 0
        self.recorded = 0

    @staticmethod
    def supported(log_dir: str) -> bool:
        return "://" not in log_dir or log_dir.startswith("file://")

    def open(self, log_dir: str) -> bool:
        """Load what an interrupted run left in this folder and start appending; False (no
        journal) for remote folders."""
        self.close(finished=False)
        if not self.supported(log_dir):
            return False
        folder = Path(log_dir.removeprefix("file://")) / JOURNAL_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.blake2b(self.url.encode(), digest_size=8).hexdigest()
        if self.shard is not None:
            name += f".shard-{self.shard[0]}-of-{self.shard[1]}"
        self.path = folder / f"{name}.jsonl"
        self._unused = _load(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.replayed = self.recorded = 0
        return True

    @property
    def active(self) -> bool:
        return self._fd is not None

    @property
    def left_over(self) -> int:
        """Answers an interrupted run left that are still unused."""
        return sum(len(q) for q in self._unused.values())

    def take(self, key: str) -> Answer | None:
        queue = self._unused.get(key)
        if not queue:
            return None
        self.replayed += 1
        return queue.popleft()

    def record(self, key: str, answer: Answer) -> None:
        if self._fd is None:
            return
        line = (
            json.dumps(
                {"k": key, "s": answer.status, "t": answer.content_type, "b": base64.b64encode(answer.body).decode()}
            )
            + "\n"
        )
        os.write(self._fd, line.encode())  # one write: a kill leaves at most a torn last line
        self.recorded += 1

    def close(self, finished: bool) -> None:
        """Stop appending. `finished`: the eval set ended normally, so its logs hold every
        finished sample and the journal is deleted; otherwise it stays for the next run."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if finished and self.path is not None:
            self.path.unlink(missing_ok=True)
            try:
                self.path.parent.rmdir()
            except OSError:  # another endpoint's journal is still there
                pass
        self._unused = {}


def _load(path: Path) -> dict[str, deque[Answer]]:
    unused: dict[str, deque[Answer]] = {}
    if not path.exists():
        return unused
    with path.open("rb") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
                answer = Answer(int(entry["s"]), str(entry["t"]), base64.b64decode(entry["b"]))
            except (ValueError, KeyError, TypeError):  # the torn last line of a killed run
                continue
            unused.setdefault(entry["k"], deque()).append(answer)
    return unused


def request_key(request: Any) -> str | None:
    """What identifies an answer: the sample, epoch and task that asked, and the request.
    None outside a sample (nothing to replay into)."""
    from ..boundary.inspect_state import active_sample

    active = active_sample()
    if active is None:
        return None
    try:
        body = request.content
    except Exception:  # a streamed request body: not journalled
        return None
    digest = hashlib.blake2b(digest_size=20)
    for part in (*active, request.method, str(request.url)):
        digest.update(part.encode())
        digest.update(b"\x1f")
    digest.update(body)
    return digest.hexdigest()


def install(model: Any, journal: ReplayJournal) -> bool:
    """Put the journal between an Inspect OpenAI-compatible model and its endpoint."""
    from ..boundary.http_layers import install_transport_layer

    return install_transport_layer(getattr(model, "api", None), _replay_transport_class(), journal)


@functools.cache
def _replay_transport_class() -> type:
    from ..boundary.http_layers import layer_class, transport_base

    _, Response = transport_base()

    async def replay_or_record(self: Any, request: Any) -> Any:
        journal: ReplayJournal = self.state
        key = request_key(request) if journal.active else None
        if key is None:
            return await self._steerbench_inner.handle_async_request(request)
        answer = journal.take(key)
        if answer is not None:
            return Response(
                answer.status, headers=[("content-type", answer.content_type)], content=answer.body, request=request
            )
        response = await self._steerbench_inner.handle_async_request(request)
        content_type = response.headers.get("content-type", "")
        if response.status_code == 200 and "text/event-stream" not in content_type:
            journal.record(key, Answer(200, content_type, await response.aread()))
        return response

    return layer_class("ReplayTransport", replay_or_record)
