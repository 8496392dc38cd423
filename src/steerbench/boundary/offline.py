"""Switches for running inspect_evals tasks offline: no retry back-off, and a GPQA CSV to trust."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any


def disable_dataset_retries() -> list[str]:
    """Make every dataset download failure final at once.

    inspect_evals wraps every Hugging Face call in ``backoff`` with ``BACKOFF_CONFIG`` fixed at
    import (3 tries, 1-5 *minute* waits, 5 tries if ``CI`` is set; no variable turns it off),
    and its remote-file loader retries 5 times. Offline, a dataset missing from the cache
    cannot come by retrying. The retry decorators call the module-level predicates
    ``should_retry`` / ``is_transient_error`` at call time, so replacing them with
    ``lambda e: False`` ends the waiting. Returns a description of each patch.
    """
    hf = importlib.import_module("inspect_evals.utils.huggingface")
    hf.should_retry = lambda err: False  # type: ignore[attr-defined]
    loader = importlib.import_module("inspect_evals.utils.load_dataset")
    loader.is_transient_error = lambda err: False  # type: ignore[attr-defined]
    return [
        "inspect_evals.utils.huggingface.should_retry -> never retry",
        "inspect_evals.utils.load_dataset.is_transient_error -> never retry",
    ]


def trust_gpqa_csv(sha256: str) -> list[str]:
    """Accept the GPQA Diamond CSV in the cache if (and only if) its SHA-256 is `sha256`.

    ``gpqa_diamond`` calls ``inspect_ai.util.download(url, GPQA_DIAMOND_DATASET_SHA256, path)``,
    which skips the network only when the cached file's SHA-256 equals the pinned hash of the
    *real* CSV. When the file at ``GPQA_DIAMOND_CACHE_PATH`` is byte for byte the given one
    (steerbench's synthetic CSV), the module's pinned hash is set to it; a real or corrupted
    file is still handled as before.
    """
    gpqa: Any = importlib.import_module("inspect_evals.gpqa.gpqa")  # its pinned hash is set below
    path = Path(gpqa.GPQA_DIAMOND_CACHE_PATH)
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
        gpqa.GPQA_DIAMOND_DATASET_SHA256 = sha256
        return [f"inspect_evals.gpqa.gpqa.GPQA_DIAMOND_DATASET_SHA256 -> {sha256} (synthetic CSV)"]
    return []
