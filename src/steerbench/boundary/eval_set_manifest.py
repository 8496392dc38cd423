"""Inspect's eval set, with a log folder's `eval-set.json` listing every task that has a log there.

Inspect rewrites `<log folder>/eval-set.json` at the start of every eval set with that eval
set's tasks only. steerbench runs several eval sets in one folder: shards (`--shard i/n`)
of a multiplier share its folders, and a run leaves out cells another run holds. Last
writer would win, and the manifest would list only some of the folder's tasks. Here the
manifest is merged instead: this eval set's tasks, then every task the manifest listed
before that this one does not (by task id). Nothing is dropped by whether it has a log yet:
an eval set that started a moment earlier may not have written its logs. On a local folder
the read and the write happen under a flock of the manifest itself, so concurrent eval sets
never lose each other's tasks; on an object store (no locks) two eval sets starting at the
same instant still could.

Inspect reads this manifest only to show an eval set in its viewer: resuming, retrying and
steerbench's own readers go by the logs.
"""

from __future__ import annotations

import os
from typing import Any

_INSTALLED = "_steerbench_merges_manifest"


def eval_set(*args: Any, **kwargs: Any) -> Any:
    """`inspect_ai.eval_set`, writing a merged `eval-set.json` (see the module's docstring)."""
    from inspect_ai import eval_set as inspect_eval_set

    install()
    return inspect_eval_set(*args, **kwargs)


def install() -> None:
    """Replace Inspect's manifest writer in this process with the merging one (once)."""
    from inspect_ai._eval import evalset

    if getattr(evalset.write_eval_set_info, _INSTALLED, False):
        return
    original = evalset.write_eval_set_info

    def write_eval_set_info(
        eval_set_id: str,
        log_dir: str,
        tasks: list[Any],
        all_logs: list[Any],
        eval_set_args: Any,
        fs_options: dict[str, Any] = {},  # noqa: B006
    ) -> None:
        try:
            _write_merged(evalset, eval_set_id, log_dir, tasks, all_logs, eval_set_args, fs_options)
        except Exception:  # never fail an eval set over its manifest: Inspect's own, unmerged
            original(eval_set_id, log_dir, tasks, all_logs, eval_set_args, fs_options)

    setattr(write_eval_set_info, _INSTALLED, True)
    evalset.write_eval_set_info = write_eval_set_info


def merged(evalset: Any, new: Any, previous: bytes | None) -> bytes:
    """The manifest `new` (an EvalSet) plus the tasks of `previous` (its JSON) not in `new`, as JSON."""
    tasks = list(new.tasks)
    if previous:
        try:
            before = evalset.EvalSet.model_validate_json(previous)
        except ValueError:  # unreadable (a write cut short): rebuilt from this eval set
            before = None
        if before is not None:
            listed = {t.task_id for t in tasks}
            tasks += [t for t in before.tasks if t.task_id not in listed]
    return bytes(evalset.to_json_safe(evalset.EvalSet(eval_set_id=new.eval_set_id, tasks=tasks)))


def _write_merged(
    evalset: Any,
    eval_set_id: str,
    log_dir: str,
    tasks: list[Any],
    all_logs: list[Any],
    eval_set_args: Any,
    fs_options: dict[str, Any],
) -> None:
    new = evalset.to_eval_set(eval_set_id, tasks, all_logs, eval_set_args)
    fs = evalset.filesystem(log_dir)
    manifest = f"{fs.dir_location(log_dir)}{fs.sep}eval-set.json"
    if not fs.is_local():
        previous = evalset._read_manifest_bytes(manifest, fs_options) if fs.exists(manifest) else None
        with evalset.file(manifest, mode="wb", fs_options=fs_options) as f:
            f.write(merged(evalset, new, previous))
        return
    import fcntl

    path = manifest.removeprefix("file://")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # held for a read and a write: milliseconds
        data = merged(evalset, new, f.read())
        f.seek(0)
        f.truncate()
        f.write(data)
