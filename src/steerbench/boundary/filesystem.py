"""Inspect's filesystem wrapper (fsspec), for log roots on object stores."""

from __future__ import annotations

from typing import Any


def filesystem(location: str) -> Any:
    """Inspect's FileSystem for `location` (ls, touch, rm, read_bytes; `.fs` is the fsspec one)."""
    from inspect_ai._util.file import filesystem as inspect_filesystem

    return inspect_filesystem(location)
