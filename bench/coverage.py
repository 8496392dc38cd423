"""Coverage of steerbench's 95% intervals and the error rates of its tests, by simulation.

    python bench/coverage.py                 # the full table (~100 s of CPU)
    python bench/coverage.py --reps 500      # quicker, noisier

For every p in {0, 0.02, 0.5, 0.98, 1} and n in {20, 40, 164, 1000} it draws --reps data sets
(fixed seed) and counts how often the interval covers the true value and how often the test
rejects a true null (steerbench.results.stats and safe_range, the functions the report uses):

- cell, 0/1 values: n Bernoulli(p) samples; Wilson's interval for p;
- cell, 0/1 values, exact: the same coverage computed over every outcome (no simulation noise);
- cell, mean over 5 epochs: sample i has its own rate p_i ~ Beta(2p, 2(1 - p)) (p_i = p at the
  edges; skewed: at p = 0.02 most samples never succeed, a few often), its value is
  Binomial(5, p_i) / 5; Wilson's interval at the mean ("fractional") for p;
- paired, 0/1, no change: (x(0), x(m)) with P(1 -> 0) = P(0 -> 1) = 0.1 min(p, 1 - p) (pairs are
  strongly correlated, as a steered model's answers are); Tango's interval covers 0 and McNemar's
  exact test rejects (two-sided, alpha 0.05);
- paired, 0/1, a change: P(1 -> 0) = 0.3 min(p, 1 - p), P(0 -> 1) = a fifth of it: coverage of
  the true change;
- paired, 5-epoch means, no change: both cells draw Binomial(5, p_i) / 5 for the same p_i; the
  bounded score interval covers 0 and the sign-flip test rejects.

p = 0 and p = 1 make every cell all-equal (0/n, n/n, no discordant pair). "size" is the share
of rejections of a true null (target <= 0.05). The non-inferiority test's size is computed
exactly (every outcome enumerated, the worst nuisance value of P(helped) on a grid), not
simulated: at harm = margin for margins 0.02 and 0.1.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from steerbench.results.safe_range import EXACT_NI_MAX_N, exact_ni_table, tango_z  # noqa: E402
from steerbench.results.exact import log_factorials, normal_cdf  # noqa: E402
from steerbench.results.stats import mean_interval, paired_change  # noqa: E402

PS = (0.0, 0.02, 0.5, 0.98, 1.0)
NS = (20, 40, 164, 1000)
EPOCHS = 5
ALPHA = 0.05
TARGET_COVERAGE = 0.93


@cache
def _binary_paired(up: int, down: int, n: int) -> tuple[float, float, float]:
    """(low, high, p) of a 0/1 paired change from its counts: the report's function, memoised."""
    # the first `down` samples go 1 -> 0, the next `up` go 0 -> 1, the rest stay 0
    base = {str(i): 1.0 if i < down else 0.0 for i in range(n)}
    then = {str(i): 1.0 if down <= i < down + up else 0.0 for i in range(n)}
    change = paired_change(base, then).change
    return change.low, change.high, change.p_value


def binary_cells(rng: np.random.Generator, p: float, n: int, reps: int) -> float:
    successes = rng.binomial(n, p, size=reps)
    covered = 0
    for k in successes:
        interval = mean_interval(np.r_[np.ones(k), np.zeros(n - k)])
        covered += interval.low <= p <= interval.high
    return covered / reps


def exact_binary_cells(p: float, n: int) -> float:
    covered = 0.0
    for k in range(n + 1):
        interval = mean_interval(np.r_[np.ones(k), np.zeros(n - k)])
        if interval.low <= p <= interval.high:
            covered += binomial_pmf(k, n, p)
    return covered


def binomial_pmf(k: int, n: int, p: float) -> float:
    if p in (0.0, 1.0):
        return float(k == round(n * p))
    return math.exp(
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log(1 - p)
    )


def epoch_cells(rng: np.random.Generator, p: float, n: int, reps: int) -> float:
    covered = 0
    for _ in range(reps):
        rates = _rates(rng, p, n)
        interval = mean_interval(rng.binomial(EPOCHS, rates) / EPOCHS)
        covered += interval.low <= p <= interval.high
    return covered / reps


def _rates(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    if p in (0.0, 1.0):
        return np.full(n, p)
    return rng.beta(2 * p, 2 * (1 - p), size=n)


def binary_pairs(
    rng: np.random.Generator, p: float, n: int, reps: int, down_rate: float, up_rate: float
) -> tuple[float, float]:
    """(coverage of the true change, rejection rate) for multinomial (down, up, same) pairs."""
    truth = up_rate - down_rate
    counts = rng.multinomial(n, [down_rate, up_rate, 1 - down_rate - up_rate], size=reps)
    covered = rejected = 0
    for down, up, _ in counts:
        low, high, p_value = _binary_paired(int(up), int(down), n)
        covered += low - 1e-12 <= truth <= high + 1e-12
        rejected += p_value < ALPHA
    return covered / reps, rejected / reps


def epoch_pairs(rng: np.random.Generator, p: float, n: int, reps: int) -> tuple[float, float]:
    covered = rejected = 0
    ids = [str(i) for i in range(n)]
    for _ in range(reps):
        rates = _rates(rng, p, n)
        base = rng.binomial(EPOCHS, rates) / EPOCHS
        then = rng.binomial(EPOCHS, rates) / EPOCHS
        change = paired_change(dict(zip(ids, base)), dict(zip(ids, then))).change
        covered += change.low <= 0 <= change.high
        rejected += change.p_value < ALPHA
    return covered / reps, rejected / reps


def ni_size(n: int, margin: float, grid: int = 41) -> float:
    """The largest rejection probability of the non-inferiority test (alpha 0.05) at harm = margin."""
    b, c = (a.ravel() for a in np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij"))
    keep = b + c <= n
    b, c = b[keep], c[keep]
    if n <= EXACT_NI_MAX_N:
        p_values = exact_ni_table(n, margin)[b, c]
    else:
        p_values = np.vectorize(normal_cdf)(np.asarray(tango_z(b, c, n, margin)))
    reject = p_values < ALPHA
    log_f = log_factorials(n)
    rest = n - b - c
    base = log_f[n] - log_f[b] - log_f[c] - log_f[rest]
    worst = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for q in np.linspace(0.0, (1 - margin) / 2, grid)[:-1]:
            log_p = (
                base
                + b * math.log(q + margin)
                + np.where(c > 0, c * np.log(q), 0.0)
                + np.where(rest > 0, rest * np.log(1 - margin - 2 * q), 0.0)
            )
            worst = max(worst, float(np.exp(log_p)[reject].sum()))
    return worst


def run(reps: int, seed: int, ns: tuple[int, ...] = NS, ps: tuple[float, ...] = PS) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    rows = []
    for n in ns:
        for p in ps:
            edge = 0.1 * min(p, 1 - p)
            null_cover, null_reject = binary_pairs(rng, p, n, reps, edge, edge)
            change_cover, _ = binary_pairs(rng, p, n, reps, 3 * edge, 0.6 * edge)
            epoch_reps = max(reps // 4, 100) if n >= 1000 else reps
            epoch_cover, epoch_reject = epoch_pairs(rng, p, n, epoch_reps)
            rows.append(
                {
                    "n": n,
                    "p": p,
                    "cell 0/1": binary_cells(rng, p, n, reps),
                    "cell 0/1 exact": exact_binary_cells(p, n),
                    "cell epochs": epoch_cells(rng, p, n, epoch_reps),
                    "paired 0/1 no change": null_cover,
                    "McNemar size": null_reject,
                    "paired 0/1 change": change_cover,
                    "paired epochs": epoch_cover,
                    "sign-flip size": epoch_reject,
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000, help="data sets per setting (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.reps, args.seed)
    columns = list(rows[0])
    print(
        f"coverage of 95% intervals and size of alpha = 0.05 tests; {args.reps} data sets per setting "
        f"(epochs columns: {max(args.reps // 4, 100)} at n = 1000), seed {args.seed}"
    )
    print("| " + " | ".join(columns) + " |")
    print("| " + " | ".join("---:" for _ in columns) + " |")
    problems = []
    for row in rows:
        print("| " + " | ".join(f"{row[c]:g}" if c in ("n", "p") else f"{row[c]:.3f}" for c in columns) + " |")
        for column, value in row.items():
            if column in ("n", "p"):
                continue
            # a size above alpha by more than three Monte Carlo standard errors
            bad = (
                value > ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / args.reps)
                if "size" in column
                else value < TARGET_COVERAGE
            )
            if bad:
                problems.append(f"n={row['n']} p={row['p']}: {column} {value:.3f}")
    print()
    print("non-inferiority test, exact size (largest rejection probability at harm = margin over the nuisance):")
    print("| n | margin 0.02 | margin 0.1 | method |")
    print("| ---: | ---: | ---: | --- |")
    for n in NS:
        sizes = [ni_size(n, margin) for margin in (0.02, 0.1)]
        method = "exact unconditional" if n <= EXACT_NI_MAX_N else "Tango asymptotic"
        print(f"| {n} | {sizes[0]:.4f} | {sizes[1]:.4f} | {method} |")
        problems += [f"NI n={n}: size {s:.4f}" for s in sizes if s > ALPHA + 0.001]
    print()
    print(f"{time.perf_counter() - started:.0f} s")
    for problem in problems:
        print(f"BELOW TARGET: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
