"""From a log root to everything the report, the figures and the notebook show.

`analyse(log_root)` aggregates the logs (steerbench.results.aggregate), reads each successful cell's
sample scores, computes per-cell 95% intervals and paired changes from multiplier 0
(steerbench.results.stats), lists the flags (steerbench.results.flags), finds the safe ranges,
slopes and output-health flags from each cell's scores and health sidecar (steerbench.results.steering_range)
and collects the run's provenance.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, UTC
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..core.cells import CellKey, cell_label, multiplier_sort_key
from .aggregate import Aggregate, aggregate
from .flags import CellEstimate, Flag, find_flags, series_rows
from .scores import (
    METRICS,
    SAFETY_HEADLINES,
    Metric,
    SampleScores,
    family,
    headline_metric,
    read_cell_scores,
    read_cells_scores,
)
from .safe_range import DEFAULT_MARGIN
from .stats import (
    ALPHA,
    Interval,
    holm,
    mean_interval,
    paired_change,
    unpaired_half_width,
)

BASELINE = 0.0
SCORES_CSV = "scores.csv"
SCORES_COLUMNS = ["benchmark", "subset", "multiplier", "metric", "value", "n", "ci_low", "ci_high", "method"]
REPORT_PACKAGES = ("steerbench", "inspect_ai", "inspect_evals", "numpy", "pandas", "matplotlib")


@dataclass(frozen=True)
class Series:
    """One benchmark (subset) across the multipliers."""

    benchmark: str
    subset: str
    category: str
    headline: Metric
    metrics: tuple[str, ...]  # what its samples are read for

    @property
    def key(self) -> tuple[str, str]:
        return self.benchmark, self.subset

    @property
    def label(self) -> str:
        return cell_label(self.benchmark, self.subset)

    @property
    def is_safety(self) -> bool:
        return self.category.lower() == "safety" or self.headline.name in SAFETY_HEADLINES


@dataclass
class CellResult:
    """One successful (benchmark, subset, multiplier) log, with its samples' metrics."""

    benchmark: str
    subset: str
    multiplier: str
    multiplier_value: float
    row: dict[str, Any]
    scores: dict[str, SampleScores] = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)
    health: dict[str, dict[str, float]] = field(default_factory=dict)  # measure -> sample id -> value


@dataclass(frozen=True)
class PairedRow:
    """The change of a benchmark's headline metric from multiplier 0, over paired samples."""

    benchmark: str
    subset: str
    metric: str
    multiplier: str
    multiplier_value: float
    n_pairs: int
    at_zero: float
    at_multiplier: float
    change: float
    ci_low: float
    ci_high: float
    method: str
    p_value: float
    p_holm: float
    significant: bool
    unpaired_ci_half_width: float  # for comparison: the half-width from two independent stderrs


@dataclass(frozen=True)
class Provenance:
    log_root: str
    generated_at: str
    first_started: str
    last_completed: str
    logs: int
    models: dict[str, str]  # multiplier label -> Inspect model
    endpoints: dict[str, str]  # multiplier label -> base URL (no credentials, no query)
    graders: list[str]
    tasks: dict[str, str]  # benchmark -> "eval_name (version ...)"
    packages: dict[str, str]  # package -> versions the logs were written with
    report_packages: dict[str, str]  # package -> versions this report was made with
    steering: dict[str, str] = field(
        default_factory=dict
    )  # multiplier label -> vector, layer, model (steerbench serve)


@dataclass
class Analysis:
    log_root: str
    aggregate: Aggregate
    multipliers: dict[float, str]  # value -> label, in order
    series: list[Series]
    cells: dict[tuple[str, str, float], CellResult]
    paired: list[PairedRow]
    flags: list[Flag]
    provenance: Provenance
    steering: Any = None  # results.steering_range.SteeringRange: safe ranges, slopes, health flags

    def cell(self, series: Series, value: float) -> CellResult | None:
        return self.cells.get((series.benchmark, series.subset, value))

    def flagged(self, series: Series, value: float) -> list[Flag]:
        label = self.multipliers.get(value)
        return [
            f
            for f in self.flags
            if (f.benchmark, f.subset) == series.key
            and f.multiplier is not None
            and multiplier_sort_key(f.multiplier) == multiplier_sort_key(label or "")
        ]

    def paired_for(self, series: Series, value: float) -> PairedRow | None:
        return next(
            (p for p in self.paired if (p.benchmark, p.subset) == series.key and p.multiplier_value == value), None
        )

    def paired_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([asdict(p) for p in self.paired], columns=list(PairedRow.__dataclass_fields__))

    def scores_frame(self) -> Any:
        """One row per (benchmark, subset, multiplier, metric): the value on the 0-1 scale, its sample
        count and 95% interval, and the interval's method (data/scores.csv)."""
        import pandas as pd

        rows = []
        for series in self.series:
            for value in self.multipliers:
                cell = self.cell(series, value)
                for metric in series.metrics:
                    interval = cell.intervals.get(metric) if cell else None
                    if interval is None:
                        continue
                    rows.append(
                        {
                            "benchmark": series.benchmark,
                            "subset": series.subset,
                            "multiplier": self.multipliers[value],
                            "metric": metric,
                            "value": interval.estimate,
                            "n": interval.n,
                            "ci_low": interval.low,
                            "ci_high": interval.high,
                            "method": interval.method,
                        }
                    )
        return pd.DataFrame(rows, columns=SCORES_COLUMNS)


# ---------------------------------------------------------------- building it


def analyse(log_root: str, planned: list[CellKey] | None = None, margin: float = DEFAULT_MARGIN) -> Analysis:
    """Everything the report shows; planned: every cell that should exist (steerbench.planned_cells);
    margin: the safe range's non-inferiority margin (0-1 scale)."""
    return analyse_aggregate(aggregate(log_root, planned), log_root, margin)


def analyse_aggregate(result: Aggregate, log_root: str, margin: float = DEFAULT_MARGIN) -> Analysis:
    multipliers: dict[float, str] = {}
    for row in sorted(result.rows, key=lambda r: multiplier_sort_key(str(r["multiplier"]))):
        multipliers.setdefault(multiplier_sort_key(str(row["multiplier"])), str(row["multiplier"]))
    series: list[Series] = []
    cells: dict[tuple[str, str, float], CellResult] = {}
    problems: list[Flag] = []
    headers: list[Any] = []
    for (benchmark, subset), rows in series_rows(result.rows).items():
        done = [r for r in rows if r.get("status") == "success"]
        metric = headline_metric(done)
        if metric is None:
            continue
        one = Series(benchmark, subset, str(rows[0].get("category", "")), metric, family(metric))
        series.append(one)
        for row in done:
            cell, problem, header = _read_cell(one, row)
            cells[(benchmark, subset, cell.multiplier_value)] = cell
            problems += [problem] if problem else []
            headers += [header] if header is not None else []
    paired = paired_rows(series, cells)
    headline_of = {s.key: s.headline.name for s in series}
    estimates = {
        key: CellEstimate(interval.estimate, interval.se, interval.n)
        for key, cell in cells.items()
        if (interval := cell.intervals.get(headline_of[key[:2]])) is not None
    }
    from .steering_range import health_flag_list, steering_range

    steering = steering_range(series, cells, multipliers, margin)
    flags = find_flags(result.rows, estimates) + problems + health_flag_list(steering.health)
    return Analysis(
        log_root, result, multipliers, series, cells, paired, flags, provenance(log_root, headers, result), steering
    )


def _read_cell(series: Series, row: dict[str, Any]) -> tuple[CellResult, Flag | None, Any]:
    label = str(row["multiplier"])
    cell = CellResult(series.benchmark, series.subset, label, multiplier_sort_key(label), row)
    log_file = str(row.get("log_file") or "")
    try:
        from inspect_ai.log import read_eval_log

        header = read_eval_log(log_file, header_only=True)
        batches = [f for f in str(row.get("batch_logs") or "").split(";") if f]
        # an adaptive cell: its batches' samples, merged by sample id (results.adaptive)
        cell.scores = (
            read_cells_scores(batches, series.metrics) if batches else read_cell_scores(log_file, series.metrics)
        )
    except Exception as e:  # one unreadable log must not stop the report
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return (
            cell,
            Flag(
                "unreadable", series.benchmark, series.subset, label, f"its sample scores could not be read ({reason})"
            ),
            None,
        )
    cell.intervals = {name: clip(mean_interval(scores.array)) for name, scores in cell.scores.items()}
    from .steering_range import read_cell_health

    cell.health = read_cell_health(log_file)  # {} for a log without a health sidecar
    for batch in batches[:-1]:  # the latest batch is log_file
        for measure, values in read_cell_health(batch).items():
            cell.health.setdefault(measure, {}).update(values)
    return cell, _mismatch(series, cell), header


def clip(interval: Interval) -> Interval:
    """A cell's metric lies in [0, 1], so its interval is cut there (the t interval can reach below 0
    near 0; Wilson's never does). The standard error is kept as it is."""
    return replace(interval, low=max(interval.low, 0.0), high=min(interval.high, 1.0))


def _mismatch(series: Series, cell: CellResult) -> Flag | None:
    """The samples must rebuild the metric the log reports, or their intervals describe something else."""
    metric = series.headline
    column = metric.column(cell.row)
    reported = cell.row.get(column) if column else None
    rebuilt = cell.scores.get(metric.name)
    if rebuilt is None:
        return Flag(
            "unreadable",
            series.benchmark,
            series.subset,
            cell.multiplier,
            f"no sample has a score that gives {metric.name}; no interval or paired change",
        )
    if (
        isinstance(reported, (int, float))
        and math.isfinite(reported)
        and abs(reported / metric.scale - rebuilt.mean) > 1e-6
    ):
        return Flag(
            "score mismatch",
            series.benchmark,
            series.subset,
            cell.multiplier,
            f"the samples give {metric.name} {rebuilt.mean:.4f}, the log reports {reported / metric.scale:.4f}; "
            "its interval and paired change may not describe the reported value",
        )
    return None


def paired_rows(series: Sequence[Series], cells: dict[tuple[str, str, float], CellResult]) -> list[PairedRow]:
    """Headline change from multiplier 0 for every other cell, with Holm's correction across all of them."""
    drafts: list[dict[str, Any]] = []
    for one in series:
        name = one.headline.name
        base = cells.get((one.benchmark, one.subset, BASELINE))
        if base is None or name not in base.scores:
            continue
        for (benchmark, subset, value), cell in sorted(cells.items(), key=lambda kv: kv[0][2]):
            if (benchmark, subset) != one.key or value == BASELINE or name not in cell.scores:
                continue
            change = paired_change(base.scores[name].values, cell.scores[name].values)
            drafts.append(
                {
                    "benchmark": benchmark,
                    "subset": subset,
                    "metric": name,
                    "multiplier": cell.multiplier,
                    "multiplier_value": value,
                    "n_pairs": change.n_pairs,
                    "at_zero": change.baseline,
                    "at_multiplier": change.other,
                    "change": change.change.estimate,
                    "ci_low": change.change.low,
                    "ci_high": change.change.high,
                    "method": change.change.method,
                    "p_value": change.change.p_value,
                    "unpaired_ci_half_width": unpaired_half_width(base.intervals[name], cell.intervals[name]),
                }
            )
    adjusted = holm([d["p_value"] for d in drafts])
    return [PairedRow(**d, p_holm=p, significant=bool(p < ALPHA)) for d, p in zip(drafts, adjusted)]


# ---------------------------------------------------------------- provenance


def clean_url(url: str | None) -> str:
    """scheme://host[:port]/path only: no user, password, query or fragment, which may carry keys."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def provenance(log_root: str, headers: Sequence[Any], result: Aggregate) -> Provenance:
    models: dict[str, str] = {}
    endpoints: dict[str, str] = {}
    steering: dict[str, str] = {}
    graders: set[str] = set()
    tasks: dict[str, set[str]] = {}
    packages: dict[str, set[str]] = {}
    for header in headers:
        meta = (header.eval.metadata or {}).get("steerbench", {})
        label = str(meta.get("multiplier", "?"))
        models[label] = header.eval.model
        endpoints[label] = clean_url(header.eval.model_base_url)
        if meta.get("steering"):
            st = meta["steering"]
            steering[label] = (
                f"vector sha256 {str(st.get('vector_sha256', '?'))[:16]}..., layer {st.get('layer', '?')}, "
                f"model {st.get('model', '?')}{', normalised' if st.get('normalized') else ''}, "
                f"{st.get('operation', 'add')} at {st.get('positions', 'all')} positions"
            )
        for role in (header.eval.model_roles or {}).values():
            for config in role if isinstance(role, list) else [role]:
                graders.add(getattr(config, "model", str(config)))
        for name, value in (header.eval.task_args or {}).items():
            if name in ("scorer_model", "grader_model", "judge_model", "grader") and isinstance(value, str):
                graders.add(value)
        benchmark = meta.get("benchmark", header.eval.task)
        tasks.setdefault(benchmark, set()).add(
            f"{meta.get('eval_name') or header.eval.task} (version {header.eval.task_version})"
        )
        for package, version in (header.eval.packages or {}).items():
            packages.setdefault(package, set()).add(str(version))
    done = [r for r in result.rows if r.get("status") not in (None, "missing")]
    started = sorted(str(r["started_at"]) for r in done if r.get("started_at"))
    completed = sorted(str(r["completed_at"]) for r in done if r.get("completed_at"))
    by_multiplier = lambda d: dict(sorted(d.items(), key=lambda kv: multiplier_sort_key(kv[0])))  # noqa: E731
    return Provenance(
        log_root=log_root,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        first_started=started[0] if started else "",
        last_completed=completed[-1] if completed else "",
        logs=len(done),
        models=by_multiplier(models),
        endpoints=by_multiplier(endpoints),
        graders=sorted(graders),
        tasks={k: ", ".join(sorted(v)) for k, v in sorted(tasks.items())},
        packages={k: ", ".join(sorted(v)) for k, v in sorted(packages.items())},
        report_packages=report_packages(),
        steering=by_multiplier(steering),
    )


def report_packages() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in REPORT_PACKAGES:
        try:
            found[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def metric_label(name: str) -> str:
    return METRICS[name].label if name in METRICS else name
