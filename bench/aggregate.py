"""Benchmark `steerbench aggregate` (header-only reads) against reading every log in full.

    python bench/aggregate.py                  # 84 logs of 2,000 samples each
    python bench/aggregate.py --logs 12 --samples 500

A real log is made once by running the bench's multiple-choice task against a simulated
endpoint (real Inspect, real .eval file); it is then copied into a study's layout
(`<category>/multiplier_<m>/`), each copy with its own steerbench cell in its header, so
every copy is a distinct cell of realistic size, with an output-health sidecar of one record per
sample next to it (as `steerbench run` writes). Then, from the same warm process:
  - header-only: steerbench.results.aggregate.aggregate() (what `steerbench aggregate` does);
  - full: inspect_ai.log.read_eval_log() of every log with its samples;
and finally the `steerbench aggregate` command itself, start to finish, as a user runs it.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
CATEGORIES = ["General", "Reasoning", "Code", "Math", "Other", "Safety"]


def make_template(samples: int, folder: Path) -> Path:
    """One real log of `samples` samples, from a real eval against a simulated endpoint."""
    existing = sorted(folder.glob("*.eval"))
    if existing:
        return existing[0]
    sys.path.insert(0, str(BENCH))
    from inspect_ai import eval
    from inspect_ai.model import GenerateConfig, get_model
    from mc_task import mc, responder

    from steerbench.sim.simulator import SimulatedEndpoint

    endpoint = SimulatedEndpoint(0.5, responder, model="simulated-steered-model").start()
    try:
        model = get_model(
            "openai-api/steer_m0p5/simulated-steered-model",
            base_url=endpoint.url,
            api_key=endpoint.key,
            config=GenerateConfig(max_connections=32),
            memoize=False,
        )
        eval(
            mc(samples=samples, name="template"),
            model=model,
            log_dir=str(folder),
            display="none",
            log_realtime=False,
            score_display=False,
            log_level="error",
        )
    finally:
        endpoint.stop()
    return sorted(folder.glob("*.eval"))[0]


def _with_cell(data: bytes, cell: dict[str, object]) -> bytes:
    """The header JSON with this copy's steerbench cell in eval.metadata."""
    header = json.loads(data)
    header["eval"]["metadata"] = {**(header["eval"].get("metadata") or {}), "steerbench": cell}
    return json.dumps(header).encode()


def make_study(template: Path, count: int, root: Path) -> list[Path]:
    """`count` copies of the template laid out as a study: 7 multipliers x count/7 benchmarks."""
    import zipfile_zstd  # noqa: F401  (Inspect's dependency: zipfile learns zstandard, as in Inspect)

    from steerbench.results.health import SIDECAR_SUFFIX

    with zipfile.ZipFile(template) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    samples = sum(1 for info, _ in members if info.filename.startswith("samples/"))
    sidecar = health_sidecar(samples)
    multipliers = ["-1.5", "-1.0", "-0.5", "0.0", "0.5", "1.0", "1.5"]
    paths = []
    for i in range(count):
        multiplier = multipliers[i % len(multipliers)]
        benchmark = f"bench_{i // len(multipliers) + 1}"
        category = CATEGORIES[(i // len(multipliers)) % len(CATEGORIES)]
        cell = {
            "benchmark": benchmark,
            "subset": "",
            "category": category,
            "multiplier": multiplier,
            "multiplier_value": float(multiplier),
            "shots": 0,
            "eval_name": "bench/mc_task.py@mc",
        }
        folder = root / category / f"multiplier_{multiplier}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"2026-01-01T00-00-00-00-00_{benchmark}_{i:04d}.eval"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as out:
            for info, data in members:
                if info.filename in ("header.json", "_journal/start.json"):
                    data = _with_cell(data, cell)
                out.writestr(info, data)
        path.write_bytes(buffer.getvalue())
        path.with_name(path.name + SIDECAR_SUFFIX).write_text(sidecar)
        paths.append(path)
    return paths


def health_sidecar(samples: int) -> str:
    """An output-health sidecar of `samples` records, as `steerbench run` writes next to each log."""
    from steerbench.results.health import dumps_sidecar, sample_record

    answer = "The answer is B because the second option matches the question best."
    return dumps_sidecar(
        [sample_record(answer, "max_tokens" if i % 10 == 0 else "stop", 12 + i % 7, i + 1, 1) for i in range(samples)]
    )


def time_headers(root: Path) -> tuple[float, int]:
    """Seconds, and rows with their output-health columns filled (from the sidecars)."""
    from steerbench.results.aggregate import aggregate

    started = time.perf_counter()
    result = aggregate(str(root))
    return time.perf_counter() - started, sum(1 for r in result.rows if r.get("output_truncated_rate") is not None)


def time_full(root: Path) -> tuple[float, int]:
    from inspect_ai.log import list_eval_logs, read_eval_log

    started = time.perf_counter()
    samples = 0
    for info in list_eval_logs(str(root), recursive=True):
        samples += len(read_eval_log(info).samples or [])
    return time.perf_counter() - started, samples


def time_command(root: Path, output: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(VENV_BIN / "steerbench"), "aggregate", "--log-root", str(root), "--output", str(output)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=84)
    parser.add_argument("--samples", type=int, default=2000, help="samples per log")
    parser.add_argument("--work", default=None, help="folder to keep the logs in (default: temporary)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="steerbench-aggregate-"))
    try:
        template = make_template(args.samples, work / f"template_{args.samples}")
        root = work / "logs"
        paths = sorted(root.rglob("*.eval"))
        if len(paths) != args.logs:  # copies from an earlier run with --work are reused
            shutil.rmtree(root, ignore_errors=True)
            paths = make_study(template, args.logs, root)
        size = sum(p.stat().st_size for p in paths) / 2**20
        print(f"{len(paths)} logs x {args.samples} samples ({size:.0f} MB) under {root}")
        time_headers(root)  # warm imports, so both reads below start alike
        headers, rows = time_headers(root)
        full, samples = time_full(root)
        command = time_command(root, work / "aggregated.csv")
        problems = []
        if rows != args.logs:
            problems.append(f"aggregate produced {rows} rows with output health, expected {args.logs}")
        if samples != args.logs * args.samples:
            problems.append(f"full reads found {samples} samples, expected {args.logs * args.samples}")
        print(f"header-only (steerbench.results.aggregate.aggregate): {headers:.2f} s")
        print(f"full reads (read_eval_log with samples):      {full:.2f} s")
        print(f"ratio full / header-only:                     {full / headers:.0f}x")
        print(f"`steerbench aggregate` command, end to end:   {command:.2f} s")
        for problem in problems:
            print(f"problem: {problem}")
        return 1 if problems else 0
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
