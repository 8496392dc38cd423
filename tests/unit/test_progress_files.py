"""Progress files and what is printed from them (issue 15), without running anything."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from steerbench.cli.output import duration, progress_line
from steerbench.cli.progress import PlainMonitor
from steerbench.execution.progress import ProgressTracker, planned_samples
from steerbench.logs.progress import CellProgress, by_cell, folder_progress, read_all_progress
from steerbench.results.flags import Flag, grouped


def spec(samples: int = 10, limit: object = None, epochs: int = 1, meta: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        dataset=SimpleNamespace(samples=samples, sample_ids=None),
        config=SimpleNamespace(limit=limit, epochs=epochs, sample_id=None),
        metadata={
            "steerbench": meta or {"benchmark": "MMLU", "subset": "", "category": "General", "multiplier": "0.5"}
        },
    )


def test_planned_samples_follow_limit_and_epochs() -> None:
    assert planned_samples(spec(10)) == 10
    assert planned_samples(spec(10, limit=3, epochs=4)) == 12
    assert planned_samples(spec(10, limit=(2, 5))) == 3


def test_a_tracker_writes_counts_errors_and_the_masked_first_error(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "General" / "multiplier_0.5"
    tracker = ProgressTracker(redact=lambda text: text.replace("sk-secret", "***"), flush_seconds=0)
    tracker.open_folder(str(folder))
    tracker.task_start("e1", spec(4))
    tracker.sample_end("e1", None)
    tracker.request_failed("HTTP 401: bad credentials: Authorization: Bearer sk-secret", "e1")
    tracker.sample_end("e1", SimpleNamespace(message="RuntimeError: boom\nmore"))
    (progress,) = folder_progress(folder)
    assert (progress.done, progress.total, progress.errors, progress.retries) == (2, 4, 1, 1)
    assert progress.first_error == "HTTP 401: bad credentials: Authorization: Bearer ***"
    assert not progress.finished
    tracker.close_folder()
    (progress,) = read_all_progress(str(tmp_path / "logs"))
    assert progress.finished and progress.label == "MMLU"
    assert "sk-secret" not in "".join(p.read_text() for p in folder.rglob("*") if p.is_file())


def test_shards_of_a_cell_add_up() -> None:
    parts = [CellProgress("B", "", "C", "1.0", total=10, done=d, started=0.0, updated=10.0) for d in (3, 4)]
    (combined,) = by_cell(parts).values()
    assert (combined.done, combined.total, combined.rate) == (7, 20, 0.7)
    assert combined.eta_seconds is not None and round(combined.eta_seconds) == 19


def test_plain_lines_at_most_once_per_interval() -> None:
    printed: list[str] = []
    monitor = PlainMonitor(every=60, out=printed.append)
    cell = CellProgress(
        "MMLU",
        "",
        "General",
        "0.5",
        total=14042,
        done=123,
        retries=2,
        first_error="HTTP 503",
        started=1000.0,
        updated=1030.0,
    )
    monitor.update([cell], now=1030.0)
    assert printed == []  # not before one interval
    monitor.update([cell], now=1061.0)
    monitor.update([cell], now=1090.0)
    # as of 1061: 123 samples in 61 s (the 31 s since the last one count too)
    assert printed == [
        "[multiplier 0.5] MMLU: 123/14042 samples, 2.02 samples/s, ETA 1h 55m; "
        "0 errors, 2 retries, first error: HTTP 503"
    ]
    assert progress_line(cell, 1061.0) == printed[0]
    # without a time, the rate is the one at the file's last update
    assert "4.10 samples/s, ETA 56m 35s" in progress_line(cell)
    assert duration(7384) == "2h 03m" and duration(5) == "5 s"


def test_a_slow_cell_never_prints_the_same_line_twice_and_its_eta_moves() -> None:
    """The report's case: one sample every 16 s (0.06 samples/s), a line due every 10 s. The file
    changes only when a sample ends, so a rate taken from the file alone printed identical pairs
    with a frozen ETA; the rate as of the print's time moves with every print."""
    printed: list[str] = []
    monitor = PlainMonitor(every=10, out=printed.append)
    started = 1000.0
    for tick in range(1, 61):  # a poll every 2.5 s for 150 s
        now = started + 2.5 * tick
        done = int((now - started) // 16)
        updated = started + 16 * done if done else started
        cell = CellProgress("HumanEval", "", "Coding", "-20", total=40, done=done, started=started, updated=updated)
        monitor.update([cell], now=now)
    assert len(printed) >= 12
    assert all(a != b for a, b in zip(printed, printed[1:])), printed
    etas = [line.split("ETA ")[1] for line in printed if "/40 samples" in line and "ETA -" not in line]
    same_count = [(a, b) for a, b in zip(printed, printed[1:]) if a.split(" samples,")[0] == b.split(" samples,")[0]]
    assert same_count, printed  # lines with no sample finished in between...
    assert all(a.split("ETA ")[1] != b.split("ETA ")[1] for a, b in same_count)  # ...still move their ETA
    assert len(etas) >= 12


def test_a_cell_with_nothing_to_measure_says_so_once() -> None:
    printed: list[str] = []
    monitor = PlainMonitor(every=10, out=printed.append)
    stalled = CellProgress("MMLU", "", "General", "1.0", total=100, done=0, started=0.0, updated=0.0)
    for now in range(10, 200, 5):
        monitor.update([stalled], now=float(now))
    assert printed == ["[multiplier 1.0] MMLU: 0/100 samples, - samples/s, ETA -"]
    monitor.update([CellProgress("MMLU", "", "General", "1.0", total=100, done=1, started=0.0, updated=201.0)], 201.0)
    assert len(printed) == 2 and "1/100 samples" in printed[1]


def test_missing_flags_grouped_per_benchmark() -> None:
    rows = [
        {"benchmark": b, "subset": "", "multiplier": m, "status": "missing" if (b, m) != ("A", "0") else "success"}
        for b in ("A", "B")
        for m in ("-1", "0", "1")
    ]
    flags = [
        Flag("missing", r["benchmark"], "", r["multiplier"], "planned, but there is no log")
        for r in rows
        if r["status"] == "missing"
    ]
    lines = [str(f) for f in grouped(flags, rows)]
    assert lines == [
        "missing: A at multipliers -1, 1: planned, but there is no log",
        "missing: B at every multiplier (-1, 0, 1): planned, but there is no log",
    ]
    one = [f for f in flags if f.benchmark == "A"][:1]
    assert [str(f) for f in grouped(one, rows)] == ["missing: A at multiplier -1: planned, but there is no log"]
    json.dumps([str(f) for f in grouped(flags, rows)])


def test_the_live_view_has_a_line_per_running_cell_and_a_total() -> None:
    from rich.console import Console

    from steerbench.cli.progress import MAX_CELL_ROWS, live_table

    cells = [
        CellProgress(
            "MMLU", "", "General", m, total=100, done=40, retries=1, first_error="HTTP 503", started=0.0, updated=10.0
        )
        for m in ("-1.0", "0.0")
    ]
    cells.append(CellProgress("GSM8K", "", "Math", "0.0", total=50, done=50, started=0.0, updated=5.0, finished=True))
    console = Console(record=True, width=140)
    console.print(live_table(cells, planned_cells=6))
    text = console.export_text()
    assert text.count("MMLU") == 4  # two rows, two error lines
    assert "40/100" in text and "4.00 samples/s" in text and "15 s" in text
    # a rate as of a later moment: 40 samples in 20 s per cell
    console = Console(record=True, width=140)
    console.print(live_table(cells, planned_cells=6, now=20.0))
    later = console.export_text()
    assert "2.00 samples/s" in later and "30 s" in later
    assert "total: 1 of 6 cells finished" in text and "130/250" in text
    many = [
        CellProgress(f"B{i}", "", "C", str(i % 2), total=10, done=1, started=0.0, updated=1.0)
        for i in range(MAX_CELL_ROWS + 1)
    ]
    console = Console(record=True, width=140)
    console.print(live_table(many, planned_cells=40))
    text = console.export_text()
    assert "9 cells" in text and "8 cells" in text  # one line per multiplier
