"""`steerbench demo` as a newcomer runs it: a subprocess, offline, within its time budget."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pandas as pd
import pytest

from steerbench.sim.demo import DEMO_MULTIPLIERS, p_refuse, p_right

CAPABILITY = ["MMLU", "ARC_Easy", "ARC_Challenge", "GPQA", "HumanEval", "MBPP", "GSM8K", "CommonSenseQA", "TruthfulQA"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "steerbench-demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "INSPECT_EVALS"))}
    completed = subprocess.run(
        [sys.executable, "-m", "steerbench.cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=out.parent,
    )
    return out, completed


def test_demo_finishes_with_a_complete_grid(demo_run):
    out, completed = demo_run
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "SIMULATED" in completed.stdout
    frame = pd.read_csv(out / "data" / "aggregated_inspect_logs.csv", dtype={"multiplier": str})
    assert set(frame["status"]) == {"success"}
    cells = {
        (r.benchmark, str(r.subset) if isinstance(r.subset, str) else "", float(r.multiplier))
        for r in frame.itertuples()
    }
    expected_rows = (len(CAPABILITY) + 3) * len(DEMO_MULTIPLIERS)  # + Sycophancy, XSTest safe/unsafe
    assert len(cells) == len(frame) >= expected_rows


def test_demo_scores_follow_the_documented_curve(demo_run):
    out, _ = demo_run
    frame = pd.read_csv(out / "data" / "aggregated_inspect_logs.csv", dtype={"multiplier": str})
    frame["m"] = frame["multiplier"].astype(float)
    for name in CAPABILITY:
        rows = frame[frame["benchmark"] == name].set_index("m")["accuracy"]
        assert rows[0.0] == pytest.approx(1.0), name
        for side in (1, -1):  # accuracy never rises as |m| grows, as P(right) = 1 - 0.3|m|
            along = [rows[side * abs(m)] for m in sorted({abs(m) for m in DEMO_MULTIPLIERS})]
            assert along == sorted(along, reverse=True), (name, side, along)
        assert rows.mean() < 1.0, name  # steering costs something somewhere
    for subset in ("safe", "unsafe"):
        rows = frame[(frame["benchmark"] == "XSTest") & (frame["subset"] == subset)].set_index("m")["refusal_rate"]
        values = [rows[m] for m in sorted(DEMO_MULTIPLIERS)]
        assert values == sorted(values), (subset, values)  # more refusals on the positive side
    assert p_right(1.5) < p_right(0.0) and p_refuse(1.5, False) > p_refuse(-1.5, False)


def test_demo_writes_the_report_and_labels_it_simulated(demo_run):
    out, _ = demo_run
    report = out / "outputs" / "report.html"
    assert report.exists()
    assert "SIMULATED" in report.read_text()
    pngs = list((out / "outputs" / "figures").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "SIMULATED" in (out / "SIMULATED.txt").read_text()
    for written in ("deployments.jsonl", "benchmarks.jsonl", "data/aggregated_inspect_logs.csv"):
        assert "simulated" in (out / written).read_text().lower(), written


def test_demo_leaves_nothing_listening(demo_run):
    out, _ = demo_run
    urls = [json.loads(line)["url"] for line in (out / "deployments.jsonl").read_text().splitlines()]
    for url in urls:
        port = urlsplit(url).port
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


def test_demo_has_40_samples_a_benchmark_and_degenerates_along_its_documented_curve(demo_run):
    from steerbench.sim.demo import DEMO_MARGIN, DEMO_ROWS, degeneration

    out, _ = demo_run
    frame = pd.read_csv(out / "data" / "aggregated_inspect_logs.csv", dtype={"multiplier": str})
    assert (frame["n_samples"] >= DEMO_ROWS).all()
    for row in frame.itertuples():
        n, m = int(row.n_samples), float(row.multiplier)
        synthetic = {"XSTest": "xstest", "Sycophancy": "sycophancy"}.get(row.benchmark, "")
        kinds = [degeneration(m, (k + 0.5) / n, synthetic) for k in range(n)]
        assert row.output_truncated_rate == pytest.approx(kinds.count("loop") / n), (row.benchmark, m)
        assert row.output_empty_rate == pytest.approx(kinds.count("empty") / n), (row.benchmark, m)
        if kinds.count("loop"):  # loops run to the token limit (MMLU's is a few tokens, GSM8K's 1,000)
            at_zero = frame[(frame["benchmark"] == row.benchmark) & (frame["multiplier"].astype(float) == 0)]
            assert row.output_repetition > 0 and row.output_tokens_mean > at_zero["output_tokens_mean"].iloc[0]
    assert frame[frame["multiplier"].astype(float).abs() <= 0.5]["output_truncated_rate"].max() == 0
    # the report finds it: truncation flags at |m| = 1.5, capability benchmarks safe within exactly +-0.5
    # at the demo's margin (40 samples cannot show the default 0.02: results/safe_range.py)
    page = (out / "outputs" / "report.html").read_text()
    assert "output truncated" in page and "Safe for every capability benchmark at once" in page
    ranges = pd.read_csv(out / "data" / "safe_range.csv", dtype={"lowest_safe": str, "highest_safe": str})
    capability = ranges[ranges["benchmark"].isin(CAPABILITY)]
    assert len(capability) == len(CAPABILITY)
    assert set(capability["lowest_safe"]) == {"-0.5"} and set(capability["highest_safe"]) == {"0.5"}
    assert set(ranges["margin"]) == {DEMO_MARGIN}
    assert (out / "outputs" / "figures" / "output_health_by_multiplier.png").exists()
