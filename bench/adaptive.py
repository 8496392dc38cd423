"""Adaptive studies (`steerbench run --adaptive`, issue 23): what they save and what they keep.

    python bench/adaptive.py                          # savings (200 studies) + validity (1000 studies), ~3 min
    python bench/adaptive.py --studies 50 --validity 200   # quicker
    python bench/adaptive.py --real                   # also a real run on loopback endpoints, both ways (~3 min)

1. Savings, side by side in one run. Each simulated study draws per-sample answers for a grid of
   7 multipliers (-1.5 ... 1.5) x 13 benchmark series with the real benchmarks' sizes (MMLU
   14,042 ... HumanEval 164; XSTest as two subsets), then evaluates the SAME answers twice:
   the full sweep (every cell, every sample) and the adaptive rule exactly as steerbench runs it
   (one seeded random order per benchmark, batches ending at 50, 100, 200, ..., each cell
   judged by results.adaptive's rule through results.confseq at alpha 0.05 / cells after
   every batch, multiplier 0 running every sample another multiplier runs). It prints the
   generated-token and sample ratios adaptive / full sweep, and how often the adaptive study
   reaches the same safe ranges and the same significant changes as the full sweep (the full
   sweep's as the report computes them: non-inferiority by Tango's / the exact test with Holm,
   changes by McNemar's exact test with Holm; the adaptive study's from its cell states: a
   side's safe range runs up to the first cell that is not non-inferior, a change is
   significant when the anytime-valid interval excludes 0).

   The answers follow the simulator's curve (steerbench.sim.demo), made richer: a benchmark's
   accuracy at m is its baseline accuracy x p_right(m) (1 up to |m| = 0.5, 0.8 at 1, 0.6 at
   1.5); a share 1 - p_right(m) of the samples degenerate (wrong, and run to the 1,000-token
   limit); and every steered cell changes 3% of its answers at random (so cells near 0 differ
   from multiplier 0 sample by sample, as real ones do, while their mean harm stays under the
   margin). Normal answers cost the benchmark's typical answer length (TOKENS below).

2. Validity: studies in which every cell's true mean harm is exactly the margin (i.i.d. paired
   harms in {-1, 0, 1} of mean exactly the margin, the estimand of the report's tests), the hardest case for a "non-inferior" call, each cell checked after EVERY sample
   (a superset of the batch ends, so the count is conservative). It prints the family-wise rate
   of any wrong non-inferior call with its 95% Clopper-Pearson interval.

3. --real: the same ratio measured by real `steerbench run` (Inspect, loopback SimulatedEndpoints):
   one benchmark of --real-items items, 7 multipliers, run once in full and once --adaptive
   into separate log roots, the words the endpoints generated counted by their responder.

Exits 1 when a goal of the issue is missed (tokens <= 0.35x, agreement >= 95%, error <= 0.05).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from steerbench.core.adaptive import AdaptiveSettings, batch_ends  # noqa: E402
from steerbench.results.adaptive import decided_interval  # noqa: E402
from steerbench.results.confseq import confidence_sequence, from_unit, to_unit  # noqa: E402
from steerbench.results.exact import clopper_pearson, mcnemar_exact  # noqa: E402
from steerbench.results.safe_range import harm_test  # noqa: E402
from steerbench.results.stats import holm  # noqa: E402

MULTIPLIERS = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
TOKEN_LIMIT = 1000
FLIP = 0.03  # share of answers a steered cell changes at random
DEBUG = False
# series: (samples, baseline accuracy, tokens of a normal answer); sizes of the inspect_evals datasets
BENCHMARKS = {
    "MMLU": (14042, 0.62, 8),
    "IFEval": (541, 0.55, 300),
    "ARC_Easy": (2376, 0.80, 8),
    "ARC_Challenge": (1172, 0.60, 8),
    "GPQA": (198, 0.30, 400),
    "HumanEval": (164, 0.35, 200),
    "MBPP": (257, 0.40, 150),
    "GSM8K": (1319, 0.45, 250),
    "CommonSenseQA": (1221, 0.65, 8),
    "TruthfulQA": (817, 0.40, 8),
    "Sycophancy": (1000, 0.50, 100),
    "XSTest[safe]": (250, 0.90, 100),
    "XSTest[unsafe]": (200, 0.85, 100),
}


def p_right(m: float) -> float:
    return max(0.0, 1.0 - 0.4 * max(0.0, abs(m) - 0.5))


@dataclass
class Series:
    """One benchmark's answers: right[m] (0/1 per sample) and tokens[m], in the study's random order."""

    name: str
    right: dict[float, np.ndarray]
    tokens: dict[float, np.ndarray]


def draw_series(name: str, rng: np.random.Generator) -> Series:
    n, accuracy, normal_tokens = BENCHMARKS[name]
    skill, fate = rng.random(n), rng.random(n)  # a sample's difficulty, and its rank for degenerating
    right, tokens = {}, {}
    for m in MULTIPLIERS:
        degenerate = fate >= 1 - (1 - p_right(m))
        answer = (skill < accuracy * p_right(m)) & ~degenerate
        if m != 0:  # FLIP of the answers change, as many to wrong as to right: no net harm from this
            answer = swap_some(answer, degenerate, rng)
        right[m] = answer.astype(float)
        tokens[m] = np.where(degenerate, TOKEN_LIMIT, normal_tokens).astype(float)
    order = rng.permutation(n)  # the study's seeded order (a uniform permutation)
    return Series(name, {m: v[order] for m, v in right.items()}, {m: v[order] for m, v in tokens.items()})


def swap_some(answer: np.ndarray, degenerate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn FLIP / 2 of the samples right -> wrong and as many wrong -> right (degenerate ones stay wrong)."""
    answer = answer.copy()
    right, wrong = np.flatnonzero(answer), np.flatnonzero(~answer & ~degenerate)
    k = min(int(FLIP * len(answer) / 2), len(right), len(wrong))
    answer[rng.choice(right, k, replace=False)] = False
    answer[rng.choice(wrong, k, replace=False)] = True
    return answer


# ---------------------------------------------------------------- the adaptive rule, as results.adaptive applies it


@dataclass(frozen=True)
class Judged:
    state: str
    used: int  # samples run
    low: float
    high: float


def judge_cell(harm: np.ndarray, settings: AdaptiveSettings, alpha: float, first: int) -> Judged:
    """Batches of one cell until its state is decided (results.adaptive._judge_cell at each batch end)."""
    n = len(harm)
    y = to_unit(harm)
    crossing = confidence_sequence(y, None, alpha, threshold=(settings.margin + 1) / 2, bounds=False)
    called = [(t, s) for t, s in ((crossing.below_at, "non-inferior"), (crossing.above_at, "harmful")) if t is not None]
    first_call = min(called) if called else None
    for end in batch_ends(first, n):
        if first_call is not None and first_call[0] <= end:
            seq = confidence_sequence(y[:end], None, alpha)
            low, high = decided_interval(first_call[1], from_unit(seq.low), from_unit(seq.high), settings.margin)
            return Judged(first_call[1], end, low, high)
        seq = confidence_sequence(y[:end], None, alpha)
        if end == n:
            return Judged("exhausted", end, from_unit(seq.low), from_unit(seq.high))
        if seq.width * 2 <= settings.precision:
            return Judged("precise", end, from_unit(seq.low), from_unit(seq.high))
    raise AssertionError("unreachable")


def harm_of(series: Series, m: float) -> np.ndarray:
    return series.right[0.0] - series.right[m]  # every simulated metric: lower is worse


def safe_range(ok: dict[float, bool]) -> tuple[float, float]:
    sides = []
    for sign in (-1.0, 1.0):
        reach = 0.0
        for m in sorted((m for m in ok if m * sign > 0), key=abs):
            if not ok[m]:
                break
            reach = m
        sides.append(reach)
    return sides[0], sides[1]


def one_study(rng: np.random.Generator, settings: AdaptiveSettings) -> dict[str, float]:
    series = [draw_series(name, rng) for name in BENCHMARKS]
    cells = [(s, m) for s in series for m in MULTIPLIERS if m != 0]
    alpha = settings.cell_alpha(len(cells))
    full_tokens = sum(float(s.tokens[m].sum()) for s in series for m in MULTIPLIERS)
    full_samples = sum(len(s.right[0.0]) for s in series) * len(MULTIPLIERS)
    adaptive_tokens = adaptive_samples = 0.0
    judged: dict[tuple[str, float], Judged] = {}
    for s in series:
        zero_used = 0
        for m in MULTIPLIERS:
            if m == 0:
                continue
            cell = judge_cell(harm_of(s, m), settings, alpha, settings.first_batch)
            judged[(s.name, m)] = cell
            zero_used = max(zero_used, cell.used)
            adaptive_tokens += float(s.tokens[m][: cell.used].sum())
            adaptive_samples += cell.used
        adaptive_tokens += float(s.tokens[0.0][:zero_used].sum())
        adaptive_samples += zero_used
    # the full sweep's decisions, as the report makes them
    tests = [(s, m, harm_test(harm_of(s, m), settings.margin, True).p_value) for s, m in cells]
    ni_holm = holm([p for _, _, p in tests])
    changes = []
    for s, m in cells:
        d = s.right[m] - s.right[0.0]
        changes.append(mcnemar_exact(int((d > 0).sum()), int((d < 0).sum())))
    change_holm = holm(changes)
    full_ok = {(s.name, m): p < 0.05 for (s, m, _), p in zip(tests, ni_holm)}
    full_change = {(s.name, m): p < 0.05 for (s, m), p in zip(cells, change_holm)}
    # an exhausted cell has the full sweep's samples: the report judges it as the full sweep does
    adaptive_ok = {
        key: full_ok[key]
        if c.state == "exhausted"
        else (c.state == "non-inferior" or (c.state == "precise" and c.high < settings.margin))
        for key, c in judged.items()
    }
    adaptive_change = {
        key: full_change[key] if c.state == "exhausted" else (c.low > 0 or c.high < 0) for key, c in judged.items()
    }
    same_ranges = all(
        safe_range({m: full_ok[(s.name, m)] for m in MULTIPLIERS if m != 0})
        == safe_range({m: adaptive_ok[(s.name, m)] for m in MULTIPLIERS if m != 0})
        for s in series
    )
    same_changes = adaptive_change == full_change
    if DEBUG:
        for key, c in judged.items():
            if adaptive_change[key] != full_change[key] or adaptive_ok[key] != full_ok[key]:
                print("  differs:", key, c, "full ok", full_ok[key], "full change", full_change[key])
    return {
        "full_tokens": full_tokens,
        "adaptive_tokens": adaptive_tokens,
        "full_samples": full_samples,
        "adaptive_samples": adaptive_samples,
        "same_ranges": same_ranges,
        "same_changes": same_changes,
        "stopped_early": sum(1 for c in judged.values() if c.state not in ("exhausted",)) / len(judged),
    }


def savings(studies: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    settings = AdaptiveSettings()
    runs = [one_study(rng, settings) for _ in range(studies)]
    total = {k: sum(float(r[k]) for r in runs) for k in runs[0]}
    ranges, changes = int(total["same_ranges"]), int(total["same_changes"])
    return {
        "token_ratio": total["adaptive_tokens"] / total["full_tokens"],
        "sample_ratio": total["adaptive_samples"] / total["full_samples"],
        "same_ranges": ranges / studies,
        "same_ranges_ci": clopper_pearson(ranges, studies),
        "same_changes": changes / studies,
        "same_changes_ci": clopper_pearson(changes, studies),
        "stopped_early": total["stopped_early"] / studies,
        "studies": studies,
    }


# ---------------------------------------------------------------- validity at the margin


def at_margin(n: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """i.i.d. paired harms in {-1, 0, 1} with mean exactly `margin`; up to 10% of answers helped."""
    helped = rng.uniform(0.0, 0.1)
    return rng.choice([-1.0, 0.0, 1.0], p=[helped, 1 - 2 * helped - margin, helped + margin], size=n)


def validity(studies: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    settings = AdaptiveSettings()
    cells = [(name, m) for name in BENCHMARKS for m in MULTIPLIERS if m != 0]
    alpha = settings.cell_alpha(len(cells))
    threshold = (settings.margin + 1) / 2
    wrong = 0
    for _ in range(studies):
        wrong += any(
            confidence_sequence(
                to_unit(at_margin(BENCHMARKS[name][0], settings.margin, rng)),
                None,
                alpha,
                threshold=threshold,
                bounds=False,
            ).below_at
            is not None
            for name, _ in cells
        )
    return {
        "fwer": wrong / studies,
        "fwer_ci": clopper_pearson(wrong, studies),
        "studies": studies,
        "cells": len(cells),
        "alpha": alpha,
    }


# ---------------------------------------------------------------- a real run, both ways


def real_run(items: int, work: Path) -> dict[str, float]:
    """`steerbench run` in full and --adaptive on the same loopback endpoints: generated tokens
    (words of the answers, counted by the simulator) and requests, adaptive / full."""
    import json
    import re

    from click.testing import CliRunner

    from steerbench.cli import main
    from steerbench.sim.simulator import Reply, SimulatedFleet

    task = work / "items.py"
    task.write_text(
        "from inspect_ai import Task, task\nfrom inspect_ai.dataset import Sample\n"
        "from inspect_ai.scorer import match\nfrom inspect_ai.solver import generate\n\n\n@task\n"
        "def items(count: int = 30) -> Task:\n"
        "    samples = [Sample(id=n, input=f'Item {n}: answer with {n}.', target=str(n)) for n in range(1, count + 1)]\n"
        "    return Task(dataset=samples, solver=generate(), scorer=match(location='exact'))\n"
    )
    produced: dict[str, int] = {"words": 0}

    def answer(m: float, messages: list, body: dict) -> object:
        n = int(re.search(r"Item (\d+)", messages[-1]["content"]).group(1))
        rank = ((n * 7919) % items + 0.5) / items  # a fixed rank per item, spread evenly
        if rank >= p_right(m):  # degenerate: wrong, to the token limit
            produced["words"] += 201
            return Reply(" ".join(["and", "so", "on,"] * 67), finish_reason="length")
        produced["words"] += 1
        return str(n)

    results = {}
    for way, extra in (("full", []), ("adaptive", ["--adaptive"])):
        produced["words"] = 0
        root = work / way
        root.mkdir(parents=True, exist_ok=True)
        with SimulatedFleet(MULTIPLIERS, answer) as fleet:
            fleet.write_deployments(root / "deployments.jsonl")
            (root / "benchmarks.jsonl").write_text(
                json.dumps(
                    {"name": "Items", "eval_name": f"{task}@items", "category": "Misc", "task_args": {"count": items}}
                )
                + "\n"
            )
            started = time.perf_counter()
            result = CliRunner().invoke(
                main,
                [
                    "run",
                    "--all",
                    "--quiet",
                    "--deployments",
                    str(root / "deployments.jsonl"),
                    "--benchmarks",
                    str(root / "benchmarks.jsonl"),
                    "--log-root",
                    str(root / "logs"),
                    *extra,
                ],
            )
            if result.exit_code != 0:
                raise SystemExit(f"{way} run failed: {result.output}")
            results[way] = {
                "requests": sum(e.stats.requests for e in fleet.endpoints),
                "words": produced["words"],
                "seconds": time.perf_counter() - started,
            }
    return {
        "token_ratio": results["adaptive"]["words"] / results["full"]["words"],
        "request_ratio": results["adaptive"]["requests"] / results["full"]["requests"],
        "full_requests": results["full"]["requests"],
        "adaptive_requests": results["adaptive"]["requests"],
        "full_seconds": results["full"]["seconds"],
        "adaptive_seconds": results["adaptive"]["seconds"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=200, help="simulated studies for the savings")
    parser.add_argument("--validity", type=int, default=1000, help="simulated studies at the margin")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--real", action="store_true", help="also a real steerbench run, full and adaptive")
    parser.add_argument("--real-items", type=int, default=1000)
    parser.add_argument("--real-only", action="store_true", help="only the real run (with --real)")
    parser.add_argument("--work", type=Path, default=None, help="folder for --real's logs (default: a temporary one)")
    parser.add_argument("--debug", action="store_true", help="print every cell where the two ways differ")
    args = parser.parse_args()
    global DEBUG
    DEBUG = args.debug
    settings = AdaptiveSettings()
    if args.real_only:
        return print_real(args)
    print(
        f"grid: {len(MULTIPLIERS)} multipliers x {len(BENCHMARKS)} series ({sum(v[0] for v in BENCHMARKS.values())} "
        f"samples per multiplier); margin {settings.margin}, precision {settings.precision}, first batch "
        f"{settings.first_batch}, family alpha {settings.family_alpha}"
    )
    started = time.perf_counter()
    s = savings(args.studies, args.seed)
    print(f"savings over {s['studies']} simulated studies ({time.perf_counter() - started:.0f} s):")
    print(f"  generated tokens, adaptive / full sweep: {s['token_ratio']:.3f}x   (goal <= 0.35x)")
    print(f"  samples,          adaptive / full sweep: {s['sample_ratio']:.3f}x")
    print(f"  cells stopped before their last sample:  {s['stopped_early']:.1%}")
    print(
        f"  same safe ranges as the full sweep:       {s['same_ranges']:.1%} of studies "
        f"[{s['same_ranges_ci'][0]:.3f}, {s['same_ranges_ci'][1]:.3f}]  (goal >= 95%)"
    )
    print(
        f"  same significant changes:                 {s['same_changes']:.1%} of studies "
        f"[{s['same_changes_ci'][0]:.3f}, {s['same_changes_ci'][1]:.3f}]  (goal >= 95%)"
    )
    started = time.perf_counter()
    v = validity(args.validity, args.seed + 1)
    print(
        f"validity over {v['studies']} simulated studies, every cell's true harm at the margin "
        f"({v['cells']} cells, alpha {v['alpha']:.2e} each; {time.perf_counter() - started:.0f} s):"
    )
    print(
        f"  family-wise rate of a wrong 'non-inferior' call: {v['fwer']:.4f}  "
        f"95% CI [{v['fwer_ci'][0]:.4f}, {v['fwer_ci'][1]:.4f}]  (goal <= 0.05)"
    )
    ok = s["token_ratio"] <= 0.35 and s["same_ranges"] >= 0.95 and s["same_changes"] >= 0.95 and v["fwer_ci"][1] <= 0.05
    if args.real:
        print_real(args)
    print("goals met" if ok else "GOAL MISSED")
    return 0 if ok else 1


def print_real(args: argparse.Namespace) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        r = real_run(args.real_items, args.work or Path(tmp))
    print(
        f"real run, 1 benchmark of {args.real_items} items x {len(MULTIPLIERS)} multipliers, loopback endpoints "
        "(answers right up to |m| = 0.5; beyond, a share 1 - p_right(m) degenerates to 201 words):"
    )
    print(
        f"  generated words, adaptive / full: {r['token_ratio']:.3f}x; requests {r['adaptive_requests']} / "
        f"{r['full_requests']} = {r['request_ratio']:.3f}x; wall {r['adaptive_seconds']:.0f} s / {r['full_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
