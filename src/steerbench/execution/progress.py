"""Live progress of a run: workers count samples, errors and retries per cell, and the run watches them.

The counts come from Inspect's public hooks (task start, sample end, sample attempt end) and a
layer on the endpoint's HTTP transport that sees every failing request (an error status, a
timeout, a dropped connection; each is retried by the OpenAI client or Inspect), so a cell whose
requests fail (401s, 5xx answers being retried, timeouts) says so while it runs, with the first
error's text, keys masked. They
go to the cells' progress files (steerbench.logs.progress). What a sample costs here: a few
attribute updates, and a file write per cell at most every FLUSH_SECONDS (bench/progress_cost.py).

A cell resumed from an interrupted run counts the samples this run finishes; the ones Inspect
reuses from the earlier log are in its final count.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..logs.contract import STEERBENCH_METADATA
from ..logs.errors import first_line
from ..logs.progress import CellProgress, progress_folder, progress_name, write_progress

FLUSH_SECONDS = 1.0  # a worker rewrites a running cell's file at most this often
MAX_ERROR_CHARS = 300


@dataclass
class _Running:
    progress: CellProgress
    path: Path
    dirty: bool = True
    written: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class ProgressTracker:
    """One worker's counts, per cell, written to the cells' progress files."""

    def __init__(
        self,
        shard: tuple[int, int] | None = None,
        redact: Any = None,
        flush_seconds: float = FLUSH_SECONDS,
        enabled: bool = True,
    ):
        self.enabled = enabled
        self.shard = shard
        self.redact = redact or (lambda text: text)
        self.flush_seconds = flush_seconds
        self.log_dir: str | None = None
        self.cells: dict[str, _Running] = {}  # Inspect eval id -> cell
        self.request_error: str | None = None  # first failing request of this endpoint, since the folder started
        self.host = socket.gethostname()

    def open_folder(self, log_dir: str) -> None:
        self.log_dir = log_dir if self.enabled else None
        self.request_error = None

    def close_folder(self) -> None:
        for running in list(self.cells.values()):
            self._finish(running)
        self.cells.clear()
        self.log_dir = None

    # -- events (from the hooks and the HTTP layer) ----------------------------------

    def task_start(self, eval_id: str, spec: Any) -> None:
        meta = (spec.metadata or {}).get(STEERBENCH_METADATA)
        if not meta or self.log_dir is None or "://" in self.log_dir.removeprefix("file://"):
            return
        now = time.time()
        progress = CellProgress(
            benchmark=meta["benchmark"],
            subset=meta.get("subset", ""),
            category=meta.get("category", ""),
            multiplier=str(meta["multiplier"]),
            total=planned_samples(spec),
            done=0,
            started=now,
            updated=now,
            pid=os.getpid(),
            host=self.host,
        )
        path = progress_folder(self.log_dir) / progress_name(progress.benchmark, progress.subset, self.shard)
        self.cells[eval_id] = _Running(progress, path)
        self._write(self.cells[eval_id], now)

    def sample_end(self, eval_id: str, error: Any) -> None:
        running = self.cells.get(eval_id)
        if running is None:
            return
        p = running.progress
        if error is not None:
            running.progress = replace(
                p, done=p.done + 1, errors=p.errors + 1, first_error=p.first_error or self._error_text(error)
            )
        else:
            running.progress = replace(p, done=p.done + 1)
        self._touch(running)

    def retried(self, eval_id: str | None, error: Any = None) -> None:
        running = self.cells.get(eval_id) if eval_id else None
        if running is None:
            return
        p = running.progress
        text = p.first_error or (self._error_text(error) if error is not None else self.request_error)
        running.progress = replace(p, retries=p.retries + 1, first_error=text)
        self._touch(running)

    def request_failed(self, text: str, eval_id: str | None = None) -> None:
        """A request to the endpoint failed (an error status, a timeout, a dropped connection);
        the OpenAI client or Inspect retries it. Counted for the eval that sent it, if known."""
        text = self.redact(text)[:MAX_ERROR_CHARS]
        if self.request_error is None:
            self.request_error = text
        running = self.cells.get(eval_id) if eval_id else None
        if running is not None:
            p = running.progress
            running.progress = replace(p, retries=p.retries + 1, first_error=p.first_error or text)
            self._touch(running)

    def task_end(self, eval_id: str) -> None:
        running = self.cells.pop(eval_id, None)
        if running is not None:
            self._finish(running)

    # -- files ---------------------------------------------------------------------------

    def _error_text(self, error: Any) -> str:
        message = getattr(error, "message", None) or str(error)
        return self.redact(first_line(message, type(error).__name__))[:MAX_ERROR_CHARS]

    def _touch(self, running: _Running) -> None:
        running.dirty = True
        now = time.time()
        if now - running.written >= self.flush_seconds:
            self._write(running, now)

    def flush(self) -> None:
        now = time.time()
        for running in self.cells.values():
            if running.dirty:
                self._write(running, now)

    def _finish(self, running: _Running) -> None:
        running.progress = replace(running.progress, finished=True)
        self._write(running, time.time())

    def _write(self, running: _Running, now: float) -> None:
        if running.progress.retries and running.progress.first_error is None and self.request_error:
            running.progress = replace(running.progress, first_error=self.request_error)
        running.progress = replace(running.progress, updated=now)
        running.written, running.dirty = now, False
        try:
            write_progress(running.path, running.progress)
        except OSError:
            pass  # progress is for people watching; the run goes on


def planned_samples(spec: Any) -> int:
    """Samples x epochs an eval runs, from its spec (dataset size, --limit, sample ids, epochs)."""
    dataset = spec.dataset
    config = spec.config
    n = len(dataset.sample_ids) if dataset.sample_ids else int(dataset.samples or 0)
    limit = config.limit
    if isinstance(limit, int):
        n = min(n, limit)
    elif isinstance(limit, (list, tuple)) and len(limit) == 2:
        n = max(0, min(n, int(limit[1])) - int(limit[0]))
    if config.sample_id is not None:
        n = len(config.sample_id) if isinstance(config.sample_id, (list, tuple)) else 1
    return n * int(config.epochs or 1)


# the tracker of this process's running job; the hooks below report to it
_tracker: ProgressTracker | None = None


def activate(tracker: ProgressTracker | None) -> None:
    global _tracker
    _tracker = tracker
    if tracker is not None:
        _register_hooks()


_registered = False


def _register_hooks() -> None:
    """Register the Inspect hooks (public API) that report to the active tracker, once per process."""
    global _registered
    if _registered:
        return
    from inspect_ai.hooks import Hooks, hooks

    @hooks(name="steerbench_progress", description="steerbench: samples, errors and retries per cell")
    class _ProgressHooks(Hooks):
        def enabled(self) -> bool:  # Inspect skips a disabled hook altogether
            return _tracker is not None and _tracker.enabled

        async def on_task_start(self, data: Any) -> None:
            if _tracker is not None:
                _tracker.task_start(data.eval_id, data.spec)

        async def on_sample_end(self, data: Any) -> None:
            if _tracker is not None:
                _tracker.sample_end(data.eval_id, data.sample.error)

        async def on_sample_attempt_end(self, data: Any) -> None:
            if _tracker is not None and data.will_retry:
                _tracker.retried(data.eval_id, data.error)

        async def on_task_end(self, data: Any) -> None:
            if _tracker is not None:
                _tracker.task_end(data.eval_id)

    _registered = True


def install_request_watch(model: Any, tracker: ProgressTracker) -> bool:
    """A layer on the model's HTTP transport that tells the tracker about failing requests."""
    from ..boundary.http_layers import install_transport_layer

    return install_transport_layer(getattr(model, "api", None), _watch_transport_class(), tracker)


_watch_class: type | None = None


def _watch_transport_class() -> type:
    global _watch_class
    if _watch_class is not None:
        return _watch_class
    from ..boundary.http_layers import layer_class

    from ..boundary.inspect_state import active_eval_id

    async def watch(self: Any, request: Any) -> Any:
        tracker: ProgressTracker = self.state
        try:
            response = await self._steerbench_inner.handle_async_request(request)
        except Exception as e:  # a timeout, a refused or dropped connection
            tracker.request_failed(f"{type(e).__name__}: {first_line(str(e), 'no detail')}", active_eval_id())
            raise
        if response.status_code >= 400:
            body = ""
            if "text/event-stream" not in response.headers.get("content-type", ""):
                body = first_line((await response.aread()).decode("utf-8", "replace"))
            tracker.request_failed(f"HTTP {response.status_code}" + (f": {body}" if body else ""), active_eval_id())
        return response

    _watch_class = layer_class("ProgressWatchTransport", watch)
    return _watch_class


# ---------------------------------------------------------------- watching a run (the parent process)


class RunMonitor:
    """What `steerbench run` shows while it runs (steerbench.cli.progress renders it): the workers'
    lines as they come, and the cells' progress files every `poll_seconds`."""

    poll_seconds = 1.0

    def line(self, text: str) -> None:
        """One line a worker reported (a folder starting, a cell ending)."""

    def update(self, progress: list[CellProgress], now: float) -> None:
        """The progress files of the run's folders, read just now."""

    def close(self) -> None:
        """The run is over (its summary follows)."""


def run_folders(log_root: str, cells: Any) -> list[str]:
    """The log folders a run writes (one per category and multiplier)."""
    from ..core.paths import join_path

    return sorted({join_path(log_root, *cell.folder.split("/")) for cell in cells})


class Watcher:
    """A thread in the parent that passes worker lines to the monitor and reads progress files."""

    def __init__(self, monitor: RunMonitor, folders: list[str], lines: Any = None):
        import threading

        self.monitor, self.folders, self.lines = monitor, folders, lines
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="steerbench-progress", daemon=True)
        self._started = time.time()

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()
        self._read()

    def _drain(self) -> None:
        while self.lines is not None and not self.lines.empty():
            try:
                self.monitor.line(self.lines.get())
            except (EOFError, OSError):
                return

    def _read(self) -> None:
        from ..logs.progress import folder_progress

        found = [p for folder in self.folders for p in folder_progress(folder)]
        # files a run before this one left behind are not this run's
        self.monitor.update([p for p in found if p.updated >= self._started - 1], time.time())

    def _loop(self) -> None:
        next_read = 0.0
        while not self._stop.is_set():
            self._drain()
            now = time.monotonic()
            if now >= next_read:
                try:
                    self._read()
                except Exception:  # the display must never stop the run
                    pass
                next_read = now + self.monitor.poll_seconds
            self._stop.wait(0.2)
