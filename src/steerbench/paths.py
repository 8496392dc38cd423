"""Local paths and fsspec URLs (s3://...) treated alike."""

from __future__ import annotations

import os


def is_remote(path: str) -> bool:
    return "://" in path


def ensure_parent(path: str) -> None:
    if not is_remote(path):
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
