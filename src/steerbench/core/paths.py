"""Local paths and fsspec URLs (s3://...) treated alike."""

from __future__ import annotations

import os


def is_remote(path: str) -> bool:
    return "://" in path


def join_path(root: str, *parts: str) -> str:
    """A path under a log root, local or remote, joined with "/"."""
    return "/".join([root.rstrip("/"), *parts])


def ensure_parent(path: str) -> None:
    if not is_remote(path):
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)


def require_filesystem(log_root: str) -> None:
    """A remote log root needs its fsspec implementation (s3:// needs s3fs): say so in one line."""
    if not is_remote(log_root):
        return
    import fsspec

    from .config import ConfigError

    protocol = log_root.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ConfigError(
            "command line", f"{protocol}:// is not a known storage protocol", field="--log-root"
        ) from None
    except ImportError:
        extra = " (pip install 'steerbench[s3]')" if protocol in ("s3", "s3a") else ""
        raise ConfigError(
            "command line", f"{protocol}:// log roots need an extra package{extra}", field="--log-root"
        ) from None
