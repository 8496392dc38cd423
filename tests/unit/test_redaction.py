"""Key redaction on its own (steerbench.execution.redaction): log records, streams, tracebacks, .eval archives."""

from __future__ import annotations

import io
import json
import logging
import sys
import traceback
from pathlib import Path

import pytest

from steerbench.execution.redaction import Redactor
from tests.helpers import all_bytes_under


def test_redactor_masks_log_records_streams_and_tracebacks() -> None:
    """The process-wide guards: log messages, `extra` fields (Inspect's trace records), logged
    exceptions and anything written to sys.stderr, e.g. a traceback."""
    key = "sk-PLANTED-unit-8Fj2Lw6Qz"
    captured, stderr_text = io.StringIO(), io.StringIO()

    class EverythingFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:  # like a JSON trace handler
            return json.dumps({k: str(v) for k, v in record.__dict__.items()}) + super().format(record)

    handler = logging.StreamHandler(captured)
    handler.setFormatter(EverythingFormatter())
    logger = logging.getLogger("steerbench.test_secrets")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    stdout, stderr, sys.stderr = sys.stdout, sys.stderr, stderr_text
    try:
        Redactor([key]).install_logging_filter()
        logger.warning("retrying after: %s", f"Authorization: Bearer {key}")
        logger.info("trace", extra={"error": f"401 - Bearer {key}", "detail": key})
        try:
            raise RuntimeError(f"server said: Bearer {key}")
        except RuntimeError:
            logger.exception("request failed")
            traceback.print_exc()  # to sys.stderr, as an uncaught exception would be
        sys.stderr.write(f"plain write {key}\n")
    finally:
        logger.removeHandler(handler)
        sys.stdout, sys.stderr = stdout, stderr  # the guard wrapped both
    logged, printed = captured.getvalue(), stderr_text.getvalue()
    assert "Bearer ***" in logged and "server said: Bearer ***" in logged and "401 - Bearer ***" in logged
    assert "RuntimeError: server said: Bearer ***" in printed and "plain write ***" in printed
    assert key not in logged + printed


def test_redactor_masks_keys_inside_eval_archives(tmp_path: Path) -> None:
    """scrub_file rewrites an .eval (zip, zstandard members, repeated names) with keys masked."""
    import zipfile

    import zipfile_zstd  # noqa: F401

    key = "sk-PLANTED-zip-5Tg8Hy3Nm"
    path = tmp_path / "x.eval"
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "w", compression=zipfile.ZIP_ZSTANDARD) as archive:  # type: ignore[attr-defined]
        archive.writestr("samples/1_epoch_1.json", json.dumps({"error": f"Bearer {key}"}))
        archive.writestr("samples/1_epoch_1.json", json.dumps({"error": f"again {key}"}))  # rewritten member
        archive.writestr("header.json", "{}")
    assert Redactor([key]).scrub_file(path)
    contents = [data for _, data in all_bytes_under(tmp_path)]
    assert len(contents) == 4  # the archive and its three members
    assert not any(key.encode() in data for data in contents)
    assert b"Bearer ***" in b"".join(contents)
