"""Per-sample scores: which metric heads a benchmark, and each cell's samples as numbers.

A cell's metric is rebuilt from its samples as one value per sample whose mean *is* the
metric (on a 0-1 scale), so that intervals and paired changes come from the samples:

- a plain mean (accuracy, XSTest's refusal rate, Sycophancy's truthfulness): the sample's own
  value;
- a ratio sum(numerator) / sum(denominator) (IFEval's instruction-level accuracies: followed /
  given instructions; Sycophancy's confidence and apologize rate: over the samples whose first
  answer was right): the linearised value R + (num_i - R * den_i) / mean(den). Its mean is R,
  and its spread gives the delta-method (clustered) standard error;
- IFEval's final_acc, the mean of four accuracies: the mean of their four per-sample values.

Scores are read from the logs' sample summaries (no messages, no transcripts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# (numerator, denominator) of one sample for one metric; None when the score has another shape
Extract = Callable[[Any], "tuple[float, float] | None"]


@dataclass(frozen=True)
class Metric:
    name: str  # as Inspect names it: the CSV column, or the part after "/" in the column
    label: str  # for figures and tables
    scale: float = 1.0  # the log reports fraction * scale (XSTest's refusal_rate is 0-100)
    stderr_column: str | None = None  # the log's own standard error, when the task reports one
    extract: Extract | None = None
    parts: tuple[str, ...] = ()  # a mean of other metrics (IFEval's final_acc)
    proportion: bool = True  # each sample's value is 0 or 1 (so a binomial error is a fair stand-in)

    def column(self, columns: Iterable[str]) -> str | None:
        """This metric's column among the CSV's columns (exact name, else `<scorer>/<name>`)."""
        columns = list(columns)
        if self.name in columns:
            return self.name
        return next((c for c in columns if c.endswith("/" + self.name)), None)


def _to_float(value: Any) -> float:
    from inspect_ai.scorer import value_to_float

    return float(value_to_float()(value))


def _scalar(value: Any) -> float | None:
    if isinstance(value, (dict, list)) or value is None:
        return None
    return _to_float(value)


def _mean_of_scalar(value: Any) -> tuple[float, float] | None:
    number = _scalar(value)
    return None if number is None else (number, 1.0)


def _refused(value: Any) -> tuple[float, float] | None:
    # as inspect_evals' XSTest refusal_rate: partial (0.5) and full (0) refusals count
    number = _scalar(value)
    return None if number is None else (1.0 if number in (0.0, 0.5) else 0.0, 1.0)


def _key(key: str, denominator: str | None = None, to_float: bool = False) -> Extract:
    def extract(value: Any) -> tuple[float, float] | None:
        if not isinstance(value, dict) or key not in value or (denominator and denominator not in value):
            return None
        numerator = _to_float(value[key]) if to_float else float(value[key])
        if denominator is None:
            return numerator, 1.0
        below = float(value[denominator]) if denominator == "num_instructions" else _to_float(value[denominator])
        return numerator, below

    return extract


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", "accuracy", stderr_column="stderr", extract=_mean_of_scalar),
        Metric("mean", "mean", stderr_column="stderr", extract=_mean_of_scalar, proportion=False),
        Metric("refusal_rate", "refusal rate", scale=100.0, extract=_refused),
        # IFEval
        Metric(
            "prompt_strict_acc",
            "prompt strict",
            stderr_column="prompt_strict_stderr",
            extract=_key("prompt_level_strict"),
        ),
        Metric(
            "prompt_loose_acc", "prompt loose", stderr_column="prompt_loose_stderr", extract=_key("prompt_level_loose")
        ),
        Metric(
            "inst_strict_acc",
            "instruction strict",
            stderr_column="inst_strict_stderr",
            extract=_key("inst_level_strict", "num_instructions"),
            proportion=False,
        ),
        Metric(
            "inst_loose_acc",
            "instruction loose",
            stderr_column="inst_loose_stderr",
            extract=_key("inst_level_loose", "num_instructions"),
            proportion=False,
        ),
        Metric(
            "final_acc",
            "final accuracy",
            stderr_column="final_stderr",
            proportion=False,
            parts=("prompt_strict_acc", "prompt_loose_acc", "inst_strict_acc", "inst_loose_acc"),
        ),
        # Sycophancy
        Metric("original_answer", "first answer right", extract=_key("original_answer", to_float=True)),
        Metric("admits_mistake", "admits mistake", extract=_key("admits_mistake", to_float=True)),
        Metric("confidence", "confidence", extract=_key("confidence", "original_answer")),
        Metric("apologize_rate", "apologize rate", extract=_key("apologize_rate", "original_answer")),
        Metric("truthfulness", "truthfulness", extract=_key("truthfulness")),
    ]
}

# The one number per benchmark that the overview figure, the heatmap and the paired table use.
HEADLINE_ORDER = ("accuracy", "final_acc", "refusal_rate", "truthfulness", "mean")
IFEVAL_METRICS = ("prompt_strict_acc", "prompt_loose_acc", "inst_strict_acc", "inst_loose_acc", "final_acc")
SYCOPHANCY_METRICS = ("original_answer", "admits_mistake", "confidence", "apologize_rate", "truthfulness")
# Metrics that describe safe behaviour rather than capability (for the trade-off figure).
SAFETY_HEADLINES = ("refusal_rate", "truthfulness")


def headline_metric(rows: Sequence[dict[str, Any]]) -> Metric | None:
    """The headline metric of one benchmark (subset): the first of HEADLINE_ORDER that any of
    its rows reports."""
    reported = {c for row in rows for c, v in row.items() if _is_number(v)}
    return next((METRICS[name] for name in HEADLINE_ORDER if METRICS[name].column(reported)), None)


def family(headline: Metric) -> tuple[str, ...]:
    """Every metric worth reading from the samples of a benchmark with this headline."""
    if headline.name == "final_acc":
        return IFEVAL_METRICS
    if headline.name == "truthfulness":
        return SYCOPHANCY_METRICS
    return (headline.name,)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- one cell's samples


@dataclass(frozen=True)
class SampleScores:
    """One metric in one cell: sample id -> a value whose mean over the samples is the metric."""

    metric: str
    values: dict[str, float]

    @property
    def array(self) -> np.ndarray:
        return np.fromiter(self.values.values(), dtype=float, count=len(self.values))

    @property
    def mean(self) -> float:
        return float(self.array.mean()) if self.values else math.nan


ScoredSample = tuple[Any, dict[str, Any]]  # (sample id, {scorer name: Score.value}), one per epoch


def cell_scores(samples: Sequence[ScoredSample], metric_names: Sequence[str]) -> dict[str, SampleScores]:
    """Per-sample values of each metric (those the samples can give) for one cell."""
    found: dict[str, SampleScores] = {}
    for name in metric_names:
        metric = METRICS[name]
        if metric.parts:
            parts = [found.get(p) or _linearised(METRICS[p], samples) for p in metric.parts]
            if all(parts) and parts:
                ids = [s for s in parts[0].values if all(s in p.values for p in parts)]  # type: ignore[union-attr]
                found[name] = SampleScores(name, {s: float(np.mean([p.values[s] for p in parts])) for s in ids})  # type: ignore[union-attr]
            continue
        scores = _linearised(metric, samples)
        if scores is not None:
            found[name] = scores
    return found


def _linearised(metric: Metric, samples: Sequence[ScoredSample]) -> SampleScores | None:
    assert metric.extract is not None
    sums: dict[str, list[float]] = {}  # id -> [numerator, denominator, epochs]
    for sample_id, scores in samples:
        pair = next((p for p in (metric.extract(v) for v in scores.values()) if p is not None), None)
        if pair is None:
            continue
        entry = sums.setdefault(str(sample_id), [0.0, 0.0, 0])
        entry[0] += pair[0]
        entry[1] += pair[1]
        entry[2] += 1
    if not sums:
        return None
    # epochs: a sample's score is the mean over its epochs, as Inspect's default reducer
    numerator = np.array([e[0] / e[2] for e in sums.values()])
    denominator = np.array([e[1] / e[2] for e in sums.values()])
    mean_denominator = float(denominator.mean())
    if mean_denominator == 0:
        return None
    ratio = float(numerator.sum() / denominator.sum())
    values = ratio + (numerator - ratio * denominator) / mean_denominator
    return SampleScores(metric.name, dict(zip(sums.keys(), values.tolist())))


def read_cell_scores(log_file: str, metric_names: Sequence[str]) -> dict[str, SampleScores]:
    """Read one log's sample summaries (scores only; never the transcripts) and rebuild the metrics.
    Samples that errored have no score and are left out, as Inspect leaves them out of its metrics."""
    from inspect_ai.log import read_eval_log_sample_summaries

    samples = [
        (summary.id, {name: score.value for name, score in summary.scores.items()})
        for summary in read_eval_log_sample_summaries(log_file)
        if summary.scores and not summary.error
    ]
    return cell_scores(samples, metric_names)


def read_samples(log_files: Sequence[str]) -> list[ScoredSample]:
    """The scored samples of one or more logs (an adaptive cell's batches, which hold different samples)."""
    from inspect_ai.log import read_eval_log_sample_summaries

    return [
        (summary.id, {name: score.value for name, score in summary.scores.items()})
        for log_file in log_files
        for summary in read_eval_log_sample_summaries(log_file)
        if summary.scores and not summary.error
    ]


def read_cells_scores(log_files: Sequence[str], metric_names: Sequence[str]) -> dict[str, SampleScores]:
    """`read_cell_scores` over several logs of one cell, merged by sample id."""
    return cell_scores(read_samples(log_files), metric_names)
