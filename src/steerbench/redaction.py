"""Keeping API keys out of everything steerbench and Inspect write or print."""

from __future__ import annotations

import io
import logging
import os
import sys
import time
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
        """Mask keys in every log record created from now on in this process (Inspect's
        retry warnings quote server error bodies, which may echo request headers)."""
        if not self.secrets:
            return
        previous = logging.getLogRecordFactory()
        redactor = self

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:
                return record
            masked = redactor.text(message)
            if masked != message:
                record.msg, record.args = masked, ()
            return record

        logging.setLogRecordFactory(factory)
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _RedactingStream):
                setattr(sys, name, _RedactingStream(stream, self))

    # -- log files ---------------------------------------------------------------

    def scrub_logs(self, log_dir: str) -> list[str]:
        """Rewrite any log written in this run that contains a key, with the key masked."""
        if not self.secrets or "://" in log_dir or not os.path.isdir(log_dir):
            return []
        scrubbed = []
        for path in Path(log_dir).iterdir():
            if path.suffix not in (".eval", ".json") or path.stat().st_mtime < self.started - 1:
                continue
            if self.scrub_file(path):
                scrubbed.append(str(path))
        return scrubbed

    def scrub_file(self, path: Path) -> bool:
        if path.suffix == ".json":
            data = path.read_bytes()
            if not self.contains_secret(data):
                return False
            _atomic_write(path, self.bytes(data))
            return True
        try:
            with zipfile.ZipFile(path) as archive:
                members = [(info, archive.read(info)) for info in archive.infolist()]
        except (zipfile.BadZipFile, OSError):
            return False
        if not any(self.contains_secret(data) for _, data in members):
            return False
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for info, data in members:
                archive.writestr(info, self.bytes(data))
        _atomic_write(path, buffer.getvalue())
        return True


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _RedactingStream:
    def __init__(self, stream: Any, redactor: Redactor):
        self._stream, self._redactor = stream, redactor

    def write(self, text: str) -> int:
        return self._stream.write(self._redactor.text(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
