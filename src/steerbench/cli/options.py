"""What several commands share: exit codes, the error handling around every command, shared options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from ..core.config import ConfigError
from .output import error

EXIT_USER_ERROR = 2
EXIT_FAILED = 1


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """User mistakes: one line and exit 2. Environment problems: a list and exit 1. No tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..execution.endpoints import PreflightError
        from ..execution.locks import RunLockedError

        try:
            return command(*args, **kwargs)
        except ConfigError as e:
            error(f"error: {e}")
            sys.exit(EXIT_USER_ERROR)
        except (PreflightError, RunLockedError) as e:
            error(f"error: {e}")
            sys.exit(EXIT_FAILED)
        except KeyboardInterrupt:
            error("\ninterrupted: run the same command again to resume")
            sys.exit(130)

    return wrapper


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise ConfigError("command line", f"{value!r} is not of the form i/n, e.g. 1/4", field="--shard") from None
    return index, count


def planned_cell_files(command: Any) -> Any:
    """--deployments and --benchmarks of the commands that read logs: the study's files, used,
    if present, to list planned cells that have no log."""
    for name, default in (("--benchmarks", "benchmarks.jsonl"), ("--deployments", "deployments.jsonl")):
        command = click.option(
            name, default=default, show_default=True, help="Used, if present, to list planned cells that have no log."
        )(command)
    return command


def synthetic_data_option(command: Any) -> Any:
    """--synthetic-data (hidden): the tasks read steerbench's bundled synthetic datasets, as in
    `steerbench demo` and the tests (the synthetic GPQA CSV is trusted; no download retries)."""
    return click.option(
        "--synthetic-data",
        is_flag=True,
        hidden=True,
        help="Tasks read steerbench's bundled synthetic datasets (demo, tests).",
    )(command)


def synthetic_gpqa_sha256(synthetic_data: bool) -> str | None:
    """The checksum the synthetic GPQA CSV is trusted by, when --synthetic-data is given."""
    if not synthetic_data:
        return None
    from ..sim.offline_data import synthetic_gpqa_sha256 as sha256

    return sha256()
