"""Flatten a log root into one CSV row per (benchmark, subset, multiplier), from log headers and health sidecars."""

from __future__ import annotations

import re
import warnings as pywarnings
from dataclasses import dataclass, field
from typing import Any

from ..core.cells import CellKey, multiplier_sort_key
from ..logs.contract import steerbench_metadata
from ..logs.errors import first_line, log_error
from .health import HEALTH_COLUMNS, cell_columns, parse_sidecar_header, sidecar_path

KEY_COLUMNS = ["benchmark", "subset", "multiplier", "category", "n_samples"]
METRIC_COLUMNS = [
    "refusal_rate",
    "accuracy",
    "stderr",
    "prompt_strict_acc",
    "prompt_strict_stderr",
    "prompt_loose_acc",
    "prompt_loose_stderr",
    "inst_strict_acc",
    "inst_strict_stderr",
    "inst_loose_acc",
    "inst_loose_stderr",
    "final_acc",
    "final_stderr",
    "mean",
    "inspect_evals/confidence",
    "inspect_evals/apologize_rate",
    "inspect_evals/truthfulness",
]
PROVENANCE_COLUMNS = [
    "status",
    "completed_samples",
    "eval_name",
    "task_version",
    "model",
    "log_file",
    "started_at",
    "completed_at",
    "total_tokens",
    "steering_vector_sha256",
    "steering_layer",
    "steering_model",
    "steering_scale",
    "steering_vector_norm",
    "steering_residual_norm",
    "steering_relative_norm",
    "steering_operation",
    "steering_positions",
]
_FOLDER = re.compile(r"(?:^|/)([^/]+)/multiplier_([^/]+)/[^/]+$")


@dataclass(frozen=True)
class LogHeader:
    """What aggregate needs from one log, identified by its steerbench cell."""

    benchmark: str
    subset: str
    multiplier: str
    category: str
    status: str
    created: str
    row: dict[str, Any]
    error: str | None = None  # first line of the log's error, if it has one
    adaptive: dict[str, Any] | None = None  # one batch of an adaptive study: its positions and settings

    @property
    def key(self) -> CellKey:
        return CellKey(self.benchmark, self.subset, self.multiplier, self.category)


@dataclass
class Aggregate:
    rows: list[dict[str, Any]]
    columns: list[str]
    skipped: list[str] = field(default_factory=list)  # unreadable logs, with reasons
    missing: list[str] = field(default_factory=list)  # planned cells without a successful log
    failed: list[str] = field(default_factory=list)  # cells whose latest log is not a success


# The original study's Sycophancy columns; inspect_evals now names these metrics without
# the prefix (score "sycophancy_scorer", metrics "confidence" and "apologize_rate").
_ORIGINAL_NAMES = {c.split("/", 1)[1]: c for c in METRIC_COLUMNS if c.startswith("inspect_evals/")}


def _metrics(log: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if log.results is None:
        return values
    for score in log.results.scores:
        # a score reduced over epochs in several ways (MBPP: mean, pass_at_1, ...) gets a
        # column set per reducer, so that one reducer's value never stands under another's name
        prefix = score.name if score.reducer in (None, "mean") else f"{score.name}[{score.reducer}]"
        for name, metric in score.metrics.items():
            plain = _ORIGINAL_NAMES.get(name, name)
            column = (
                plain
                if plain not in values and (plain in METRIC_COLUMNS or len(log.results.scores) == 1)
                else f"{prefix}/{name}"
            )
            if column in values:
                column = f"{prefix}/{name}"
            values[column] = metric.value
    return values


def _steering_columns(steering: dict[str, Any] | None) -> dict[str, Any]:
    """Provenance of `steerbench serve` deployments; empty for hand-written ones."""
    if not steering:
        return {}

    def per_layer(value: Any) -> Any:  # one value per layer: "a;b" where several layers are steered
        return ";".join(map(str, value)) if isinstance(value, list) else value

    return {
        "steering_vector_sha256": steering.get("vector_sha256", ""),
        "steering_layer": per_layer(steering.get("layer")),
        "steering_model": steering.get("model", ""),
        "steering_scale": steering.get("scale", ""),
        "steering_vector_norm": per_layer(steering.get("vector_norm", "")),
        "steering_residual_norm": per_layer(steering.get("residual_norm", "")),
        "steering_relative_norm": per_layer(steering.get("relative_norm", "")),
        # deployments written before operations and positions existed added at every position
        "steering_operation": steering.get("operation", "add"),
        "steering_positions": steering.get("positions", "all"),
    }


def header_of(log: Any, location: str) -> LogHeader | None:
    meta = steerbench_metadata(log)
    if meta:
        benchmark, subset = meta["benchmark"], meta.get("subset", "")
        multiplier, category = str(meta["multiplier"]), meta["category"]
        eval_name = meta.get("eval_name") or log.eval.task
    else:
        # a log written by plain `inspect eval` into <category>/multiplier_<v>/
        found = _FOLDER.search(location.replace("\\", "/"))
        if not found:
            return None
        category, multiplier = found.group(1), found.group(2)
        benchmark, subset, eval_name = log.eval.task.split("/")[-1], "", log.eval.task
    results = log.results
    usage = log.stats.model_usage if log.stats else {}
    row: dict[str, Any] = {
        "benchmark": benchmark,
        "subset": subset,
        "multiplier": multiplier,
        "category": category,
        "n_samples": results.total_samples if results else 0,
        **_metrics(log),
        "status": log.status,
        "completed_samples": results.completed_samples if results else 0,
        "eval_name": eval_name,
        "task_version": log.eval.task_version,
        "model": log.eval.model,
        "log_file": location,
        "started_at": log.stats.started_at if log.stats else "",
        "completed_at": log.stats.completed_at if log.stats else "",
        "total_tokens": sum(u.total_tokens for u in usage.values()) if usage else 0,
        **_steering_columns((meta or {}).get("steering")),
    }
    return LogHeader(
        benchmark,
        subset,
        multiplier,
        category,
        log.status,
        log.eval.created,
        row,
        log_error(log)[0],
        (meta or {}).get("adaptive"),
    )


def read_headers(log_root: str) -> tuple[list[LogHeader], list[str]]:
    from inspect_ai.log import list_eval_logs

    from ..logs.headers import read_log_headers

    headers: list[LogHeader] = []
    skipped: list[str] = []
    try:
        infos = list_eval_logs(log_root, recursive=True)
    except FileNotFoundError:
        return [], []
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        # header.json alone, in parallel threads: 84 logs of 2,000 samples in ~1 s (issue 5)
        logs = read_log_headers([info.name for info in infos])
    for info, log in zip(infos, logs):
        if isinstance(log, Exception):
            e = log
            skipped.append(f"{info.name}: {type(e).__name__}: {first_line(str(e), 'unreadable')}")
            continue
        header = header_of(log, info.name)
        if header is not None:
            headers.append(header)
    return headers, skipped


def pick_latest(headers: list[LogHeader]) -> dict[tuple[str, str, float], LogHeader]:
    """Per cell: the latest successful log, else the latest log of any status."""
    chosen: dict[tuple[str, str, float], LogHeader] = {}
    for h in sorted(headers, key=lambda h: h.created):
        key = h.key.ident
        current = chosen.get(key)
        if current is None or h.status == "success" or current.status != "success":
            chosen[key] = h
    return chosen


def aggregate(log_root: str, planned: list[CellKey] | None = None) -> Aggregate:
    """planned: every cell that should exist (steerbench.core.plan.planned_cells)."""
    headers, skipped = read_headers(log_root)
    chosen = pick_latest([h for h in headers if not h.adaptive])
    rows_by_cell = {ident: h.row for ident, h in chosen.items()}
    add_health(list(rows_by_cell.values()))
    failed = [f"{h.key.where}: {h.status}" for h in chosen.values() if h.status != "success"]
    adaptive = adaptive_rows([h for h in headers if h.adaptive])
    for row in adaptive:  # an adaptive cell's batches, merged, stand for the cell
        rows_by_cell[(row["benchmark"], row["subset"], multiplier_sort_key(str(row["multiplier"])))] = row
        if row.get("status") != "success":
            failed.append(
                f"{CellKey(row['benchmark'], row['subset'], str(row['multiplier']), row['category']).where}: "
                f"{row.get('status')}"
            )
    rows = list(rows_by_cell.values())
    missing: list[str] = []
    for cell in planned or []:
        if cell.ident not in rows_by_cell:
            missing.append(f"{cell.where}: no log")
            rows.append(
                {
                    "benchmark": cell.benchmark,
                    "subset": cell.subset,
                    "multiplier": cell.multiplier,
                    "category": cell.category,
                    "n_samples": 0,
                    "status": "missing",
                    "completed_samples": 0,
                }
            )
    rows.sort(key=lambda r: (r["category"], r["benchmark"], r["subset"], multiplier_sort_key(r["multiplier"])))
    known = set(KEY_COLUMNS) | set(METRIC_COLUMNS) | set(HEALTH_COLUMNS) | set(PROVENANCE_COLUMNS)
    from .adaptive import ADAPTIVE_COLUMNS

    adaptive_columns = ADAPTIVE_COLUMNS if adaptive else []
    extra = sorted({c for r in rows for c in r} - known - set(adaptive_columns))
    columns = KEY_COLUMNS + METRIC_COLUMNS + extra + adaptive_columns + HEALTH_COLUMNS + PROVENANCE_COLUMNS
    return Aggregate(rows, columns, skipped, missing, failed)


def adaptive_rows(headers: list[LogHeader]) -> list[dict[str, Any]]:
    """One row per adaptive cell (results.adaptive.merged_rows), with its batches' output health merged."""
    if not headers:
        return []
    from .adaptive import merge_health, merged_rows

    rows = merged_rows(headers)
    batch_rows = {str(h.row["log_file"]): dict(h.row) for h in headers}
    for row in rows:
        batches = [batch_rows[f] for f in str(row.get("batch_logs") or "").split(";") if f]
        add_health(batches)
        row.update(merge_health(batches) if batches else {c: None for c in HEALTH_COLUMNS})
    return rows


def add_health(rows: list[dict[str, Any]]) -> None:
    """The four output-health columns of each row, from the first line of its log's sidecar
    (results/health.py); empty for logs that have none (written before steerbench kept one)."""
    from ..logs.sidecars import read_first_lines

    lines = read_first_lines([sidecar_path(str(row["log_file"])) for row in rows])
    for row, line in zip(rows, lines):
        row.update(cell_columns(parse_sidecar_header(line) if line else None))


def write_csv(result: Aggregate, output: str) -> None:
    import pandas as pd

    from ..core.paths import ensure_parent

    ensure_parent(output)
    frame = pd.DataFrame(result.rows, columns=result.columns)
    frame.to_csv(output, index=False)
