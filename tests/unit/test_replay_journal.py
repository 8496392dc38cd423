"""The replay journal's file handling (steerbench.execution.replay), without any run."""

from __future__ import annotations

from pathlib import Path

from steerbench.execution.replay import Answer, ReplayJournal


def test_remote_log_folders_have_no_journal() -> None:
    journal = ReplayJournal("http://127.0.0.1:1/v1")
    assert not journal.open("s3://bucket/logs/Misc/multiplier_0")
    assert not journal.active


def test_shards_of_one_multiplier_keep_their_own_journals(tmp_path: Path) -> None:
    """Shards of one multiplier run side by side in one folder: one ending must not delete
    the journal the other is still writing."""

    url = "http://127.0.0.1:1/v1"
    first, second = ReplayJournal(url, (1, 2)), ReplayJournal(url, (2, 2))
    assert first.open(str(tmp_path)) and second.open(str(tmp_path))
    assert first.path != second.path
    second.record("k", Answer(200, "application/json", b"{}"))
    first.close(finished=True)
    second.close(finished=False)
    assert second.path.exists() and not first.path.exists()
    again = ReplayJournal(url, (2, 2))
    again.open(str(tmp_path))
    assert again.left_over == 1 and again.take("k") == Answer(200, "application/json", b"{}")
    assert again.take("k") is None  # each answer is replayed once
