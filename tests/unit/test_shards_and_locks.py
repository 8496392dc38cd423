"""Shards (`--shard i/n`) partition the grid, and the run locks let shards of one multiplier run together."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from steerbench.cli import main
from tests.helpers import TASKS_FILE, write_jsonl


def test_shards_cover_every_cell_exactly_once(tmp_path: Path) -> None:
    """For any n, the shards of a 7 x 13 grid partition it, whatever order the files list things in."""
    from steerbench.core.config import load_benchmarks, load_deployments
    from steerbench.core.plan import RunOptions, build_plan
    from steerbench.tasks.resolve import resolve_benchmarks

    multipliers = ["-1.5", "-1.0", "-0.5", "0.0", "0.5", "1.0", "1.5"]
    write_jsonl(
        tmp_path / "deployments.jsonl",
        [{"multiplier": m, "url": f"http://127.0.0.1:{9000 + i}/v1/", "key": "k"} for i, m in enumerate(multipliers)],
    )
    write_jsonl(
        tmp_path / "benchmarks.jsonl",
        [
            {
                "name": f"B{i}",
                "eval_name": f"{TASKS_FILE}@arithmetic",
                "category": f"C{i % 4}",
                "shots": 0,
                "task_args": {"offset": i},
            }
            for i in range(12)
        ]
        + [
            {
                "name": "Subsets",
                "eval_name": f"{TASKS_FILE}@arithmetic",
                "category": "C0",
                "shots": 0,
                "subsets": [{"offset": 100}, {"offset": 200}],
            }
        ],
    )
    deployments = load_deployments(tmp_path / "deployments.jsonl")
    benchmarks = load_benchmarks(tmp_path / "benchmarks.jsonl")
    signatures = resolve_benchmarks(benchmarks)
    everything = {c.key for c in build_plan(deployments, benchmarks, signatures, RunOptions(all=True)).cells}
    assert len(everything) == 7 * 14
    for n in (1, 2, 3, 5, 8):
        shards = [
            [c.key for c in build_plan(deployments, benchmarks, signatures, RunOptions(all=True, shard=(i, n))).cells]
            for i in range(1, n + 1)
        ]
        flat = [key for shard in shards for key in shard]
        assert sorted(flat) == sorted(everything), n  # every cell, none twice
        assert all(shards), n  # and no machine idle on this grid
        reordered = build_plan(
            list(reversed(deployments)), list(reversed(benchmarks)), signatures, RunOptions(all=True, shard=(1, n))
        ).cells
        assert {c.key for c in reordered} == set(shards[0]), n  # independent of file order
    for bad in ("0/3", "4/3", "1/0", "x", "1/2/3"):
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--all",
                "--dry-run",
                "--shard",
                bad,
                "--deployments",
                str(tmp_path / "deployments.jsonl"),
                "--benchmarks",
                str(tmp_path / "benchmarks.jsonl"),
            ],
        )
        assert result.exit_code == 2 and "--shard" in result.output, (bad, result.output)


def test_shards_of_one_multiplier_may_share_a_local_root_but_not_a_shard(tmp_path: Path) -> None:
    """On a shared filesystem (a Slurm array), locks let different shards of a multiplier run together."""
    from steerbench.core.config import Multiplier
    from steerbench.execution.locks import RunLockedError, multiplier_locks, running_multipliers

    root, one = str(tmp_path / "logs"), [Multiplier(1.0, "1.0")]
    with multiplier_locks(root, one, (1, 2)):
        with multiplier_locks(root, one, (2, 2)):
            assert running_multipliers(root) == {"1.0": f"pid {os.getpid()}"}
        for refused in ((1, 2), None):  # the same shard again; everything at once
            with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
                with multiplier_locks(root, one, refused):
                    pass
    with multiplier_locks(root, one):
        with pytest.raises(RunLockedError):
            with multiplier_locks(root, one, (2, 2)):
                pass
    assert running_multipliers(root) == {}


def test_a_cell_held_by_another_run_is_skipped_with_who_holds_it(tmp_path: Path) -> None:
    """Cell locks: whatever the shard split, one run per cell; the other is told who has it."""
    import socket
    from types import SimpleNamespace

    from steerbench.core.config import Multiplier
    from steerbench.execution.locks import one_run_per_cell, take_cells

    root = str(tmp_path / "logs")
    one = Multiplier(1.0, "1")
    cells = [SimpleNamespace(key=f"{name}||1.0", label=name, multiplier=one) for name in ("EchoA", "EchoB")]
    first = take_cells(root, cells[1:])
    try:
        second = take_cells(root, cells)
        assert [c.label for c in second.cells] == ["EchoA"]
        assert second.skipped == [
            (
                cells[1],
                f"skip: EchoB m=1 is being run by pid {os.getpid()} on {socket.gethostname()}; re-run to pick it up",
            )
        ]
        second.release()

        @one_run_per_cell(lambda cell, line: ("skipped", cell.label, line))
        def run_folder(job, model, folder, held):
            assert take_cells(root, held).cells == []  # held while the folder runs
            return [("ran", c.label) for c in held]

        outcomes = run_folder(SimpleNamespace(log_root=root), None, "Echo/multiplier_1", cells)
        assert [o[:2] for o in outcomes] == [("skipped", "EchoB"), ("ran", "EchoA")]
    finally:
        first.release()
    again = take_cells(root, cells)  # all free once released
    assert again.cells == cells and again.skipped == []
    again.release()
    remote = take_cells("s3://bucket/study", cells)  # object stores: no locks, nothing excluded
    assert remote.cells == cells and remote.skipped == []
