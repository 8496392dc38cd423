"""Keeping API keys out of everything steerbench and Inspect write or print."""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import logging
import os
import sys
import time
import traceback
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "***"


class Redactor:
    def __init__(self, secrets: Iterable[str]):
        # longest first, so a key that contains another is masked whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.started = time.time()

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, MASK)
        return value

    def contains_secret(self, data: bytes) -> bool:
        return any(secret.encode() in data for secret in self.secrets)

    def bytes(self, data: bytes) -> bytes:
        for secret in self.secrets:
            data = data.replace(secret.encode(), MASK.encode())
        return data

    # -- process-wide guards -------------------------------------------------

    def install_logging_filter(self) -> None:
        """Mask keys in every log record made from now on in this process, and in what is
        written to sys.stdout/sys.stderr. Inspect's retry warnings and its trace file
        (~/.local/share/inspect_ai/traces) quote server error bodies, which may echo request
        headers. Safe to call repeatedly: the hooks are installed once, the keys accumulate."""
        if not self.secrets:
            return
        _PROCESS_SECRETS.add(self)
        _install_record_hooks()
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _RedactingStream):
                setattr(sys, name, _RedactingStream(stream, _PROCESS_SECRETS))

    def guard_model(self, model: Any) -> bool:
        """Mask keys in every response body an Inspect OpenAI-compatible model receives,
        before the SDK turns it into an exception message (a 401 body that echoes the
        Authorization header), so no error text Inspect records, logs or buffers can hold a
        key. False when the model's API has no httpx client to guard (other providers)."""
        return _guard_http_client(getattr(model, "api", None), self)

    # -- log files ---------------------------------------------------------------

    def scrub_logs(self, log_dir: str) -> list[str]:
        """Rewrite any log written in this run that contains a key, with the key masked."""
        if not self.secrets:
            return []
        if "://" in log_dir:
            return self._scrub_remote(log_dir)
        if not os.path.isdir(log_dir):
            return []
        scrubbed = []
        for path in Path(log_dir).iterdir():
            if path.suffix not in (".eval", ".json") or path.stat().st_mtime < self.started - 1:
                continue
            if self.scrub_file(path):
                scrubbed.append(str(path))
        return scrubbed

    def scrub_file(self, path: Path) -> bool:
        masked = self.masked_log(path.name, path.read_bytes())
        if masked is None:
            return False
        _atomic_write(path, masked)
        return True

    def masked_log(self, name: str, data: builtins.bytes) -> builtins.bytes | None:  # `bytes` is a method here
        """A log's bytes (.json, or .eval zip) with every key masked; None when it holds no key."""
        if name.endswith(".json"):
            return self.bytes(data) if self.contains_secret(data) else None
        _enable_zstd()  # Inspect compresses .eval members with zstandard
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [(info, archive.read(info)) for info in archive.infolist()]
        except (zipfile.BadZipFile, OSError):
            return None
        if not any(self.contains_secret(member) for _, member in members):
            return None
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # an .eval rewritten by Inspect during the run holds a member name more than once
            # (the latest wins); keep them all, as written
            warnings.simplefilter("ignore", UserWarning)
            with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for info, member in members:
                    archive.writestr(info, self.bytes(member))
        return buffer.getvalue()

    def _scrub_remote(self, log_dir: str) -> list[str]:
        """The same for an object store (s3://...): objects written since this run started."""
        from ..boundary.filesystem import filesystem

        fs = filesystem(log_dir)
        try:
            entries = fs.ls(log_dir)
        except FileNotFoundError:
            return []
        since_ms = (self.started - REMOTE_CLOCK_SKEW) * 1000
        scrubbed: list[str] = []
        for entry in entries:
            if entry.type != "file" or not entry.name.endswith((".eval", ".json")):
                continue
            if entry.mtime is not None and entry.mtime < since_ms:
                continue
            data = fs.read_bytes(entry.name)
            if entry.name.endswith(".eval") and _still_being_written(data):
                continue  # another process (a shard) owns it and scrubs it when it finishes
            masked = self.masked_log(entry.name, data)
            if masked is not None:
                fs.fs.pipe_file(entry.name, masked)  # one PUT: readers see old or new, never half
                scrubbed.append(entry.name)
        return scrubbed


# An object store's clock may differ from ours; look this far back for objects this run wrote.
REMOTE_CLOCK_SKEW = 300.0


def _still_being_written(data: bytes) -> bool:
    """Inspect writes an .eval's header.json only when the eval finishes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "header.json" not in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def environment_secrets(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """Provider keys set in the environment (graders' keys), to be masked like endpoint keys."""
    from .preflight import PROVIDER_KEYS

    environ = dict(os.environ) if environ is None else environ
    return tuple(environ[var] for var in PROVIDER_KEYS.values() if environ.get(var))


def _enable_zstd() -> None:
    """Teach zipfile the zstandard method (Python < 3.14), as Inspect does when imported."""
    with contextlib.suppress(ImportError):
        import zipfile_zstd  # noqa: F401


# ---------------------------------------------------------------- process-wide hooks


class _SecretSet:
    """Every key registered in this process (one redactor per endpoint job)."""

    def __init__(self) -> None:
        self._redactors: list[Redactor] = []

    def add(self, redactor: Redactor) -> None:
        if redactor not in self._redactors:
            self._redactors.append(redactor)

    def text(self, value: str) -> str:
        for redactor in self._redactors:
            value = redactor.text(value)
        return value


_PROCESS_SECRETS = _SecretSet()
_hooks_installed = False


def _mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask keys in a record's message, its extra fields and its exception text."""
    try:
        message = record.getMessage()
    except Exception:
        message = None
    if message is not None:
        masked = _PROCESS_SECRETS.text(message)
        if masked != message:
            record.msg, record.args = masked, ()
    for name, value in list(record.__dict__.items()):
        if isinstance(value, str) and name not in ("msg", "message"):
            masked = _PROCESS_SECRETS.text(value)
            if masked != value:
                setattr(record, name, masked)
    if record.exc_info and record.exc_info[1] is not None:
        # a handler would render the exception itself (Rich does, ignoring exc_text): when
        # its text holds a key, log the masked text instead of the exception object
        rendered = "".join(traceback.format_exception(*record.exc_info))
        masked = _PROCESS_SECRETS.text(rendered)
        if masked != rendered:
            text = _PROCESS_SECRETS.text(message if message is not None else str(record.msg))
            record.msg = f"{text}\n{masked.rstrip()}"
            record.args, record.exc_info, record.exc_text = (), None, None
    return record


def _install_record_hooks() -> None:
    """Mask every record as a logger makes it. Logger.makeRecord rather than the record
    factory, because the `extra` fields are added after the factory runs, and Inspect's
    trace records (~/.local/share/inspect_ai/traces) carry the error text there."""
    global _hooks_installed
    if _hooks_installed:
        return
    make_record = logging.Logger.makeRecord

    def masked_make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return _mask_record(make_record(self, *args, **kwargs))

    logging.Logger.makeRecord = masked_make_record  # type: ignore[method-assign]
    _hooks_installed = True


# ---------------------------------------------------------------- HTTP responses


def _guard_http_client(api: Any, redactor: Redactor) -> bool:
    """Put a masking transport into the API's httpx client, and into the clients it builds
    later (Inspect rebuilds the client after an authentication failure)."""
    if not redactor.secrets:
        return False
    from ..boundary.http_layers import install_transport_layer

    return install_transport_layer(api, _masking_transport_class(), redactor)


@functools.cache
def _masking_transport_class() -> type:
    """Built on first use, so that importing this module does not import an HTTP library."""
    from ..boundary.http_layers import layer_class, transport_base

    _, Response = transport_base()

    async def mask(self: Any, request: Any) -> Any:
        """Reads each (non-streaming) response and masks keys in its headers and body."""
        redactor: Redactor = self.state
        response = await self._steerbench_inner.handle_async_request(request)
        if "text/event-stream" in response.headers.get("content-type", ""):
            return response  # a stream is passed through as it arrives
        body = await response.aread()  # decoded (gzip etc. undone)
        headers = list(response.headers.multi_items())
        secret = redactor.contains_secret
        if not secret(body) and not any(secret(value.encode()) for _, value in headers):
            return response
        kept = [(k, redactor.text(v)) for k, v in headers if k.lower() not in ("content-length", "content-encoding")]
        return Response(
            response.status_code,
            headers=kept,
            content=redactor.bytes(body),
            request=request,
            extensions=response.extensions,
        )

    return layer_class("MaskingTransport", mask)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _RedactingStream:
    def __init__(self, stream: Any, redactor: Redactor | _SecretSet):
        self._stream, self._redactor = stream, redactor

    def write(self, text: str) -> int:
        return self._stream.write(self._redactor.text(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
