"""`steerbench report --compare LABEL=LOG_ROOT ...`: several studies side by side.

A vector and its random control (`steerbench vector random`), layer 8 against layer 12, or two
models. Each study is analysed on its own, exactly as `steerbench report` would (its own
multiplier 0, its own paired tests and Holm family, its own safe ranges); this module only sets
the results beside each other, so no number here differs from the study's own report.

Studies share benchmarks but may differ in multipliers. The x axis is the multiplier, or with
`--axis relative-norm` the steering's size in units of the residual stream, |m·v| / ‖h‖ (signed
like m; the mean over the steered layers), from `steerbench serve`'s provenance: the unit in
which studies on different models, layers or vectors can be compared.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import ConfigError
from ..results.analysis import BASELINE, Analysis, Series, metric_label
from .plotting import ZERO_GREY, grid_shape, new_figure, note, save, styled

AXES = ("multiplier", "relative-norm")
AXIS_LABELS = {"multiplier": "multiplier", "relative-norm": "|m·v| / residual norm (signed)"}
COMPARE_PAGE = "compare.html"
SAFE_RANGE_CSV = "compare_safe_range.csv"
PAIRED_CSV = "compare_paired_differences.csv"
SCORES_CSV = "compare_scores.csv"
HEALTH_PANELS = (  # (CSV column, title, y label)
    ("output_truncated_rate", "truncated (at the token limit)", "share of samples"),
    ("output_empty_rate", "empty answers", "share of samples"),
    ("output_repetition", "repetition (16-character stretches said twice before)", "mean share of characters"),
    ("output_tokens_mean", "output tokens", "mean tokens per sample"),
)


@dataclass(frozen=True)
class Study:
    label: str
    log_root: str
    analysis: Analysis


@dataclass(frozen=True)
class CompareFiles:
    html: Path
    figures: dict[str, list[Path]]
    safe_range_csv: Path
    paired_csv: Path
    scores_csv: Path


def parse_studies(values: Sequence[str]) -> list[tuple[str, str]]:
    """`LABEL=LOG_ROOT` pairs from --compare, in order; labels unique, at least two studies."""
    studies: list[tuple[str, str]] = []
    for value in values:
        label, sep, root = value.partition("=")
        label, root = label.strip(), root.strip()
        if not sep or not label or not root:
            raise ConfigError("command line", f"expected LABEL=LOG_ROOT, got {value!r}", field="--compare")
        if any(label == seen for seen, _ in studies):
            raise ConfigError("command line", f"the label {label!r} is given twice", field="--compare")
        studies.append((label, root))
    if len(studies) < 2:
        raise ConfigError("command line", "needs at least two studies (LABEL=LOG_ROOT each)", field="--compare")
    return studies


# ---------------------------------------------------------------- the x axis


def axis_values(analysis: Analysis, axis: str) -> dict[float, float]:
    """Multiplier value -> x position. relative-norm: the provenance's |m·v| / ‖h‖, signed like m;
    multipliers without it are left out (multiplier 0 is 0 either way)."""
    if axis == "multiplier":
        return {value: value for value in analysis.multipliers}
    positions: dict[float, float] = {}
    for value in analysis.multipliers:
        if value == BASELINE:
            positions[value] = 0.0
            continue
        relative = next(
            (
                _relative_norm(cell.row)
                for (_, _, v), cell in analysis.cells.items()
                if v == value and _relative_norm(cell.row) is not None
            ),
            None,
        )
        if relative is not None:
            positions[value] = math.copysign(relative, value)
    return positions


def _relative_norm(row: dict[str, Any]) -> float | None:
    raw = row.get("steering_relative_norm")
    if raw is None or raw == "" or (isinstance(raw, float) and math.isnan(raw)):
        return None
    try:
        parts = [abs(float(p)) for p in str(raw).split(";") if p.strip()]
    except ValueError:
        return None
    return sum(parts) / len(parts) if parts else None


def check_axis(studies: Sequence[Study], axis: str) -> None:
    """--axis relative-norm needs the steering's norms for every steered multiplier of every study."""
    if axis != "relative-norm":
        return
    for study in studies:
        positions = axis_values(study.analysis, axis)
        lacking = [study.analysis.multipliers[v] for v in study.analysis.multipliers if v not in positions]
        if lacking:
            raise ConfigError(
                "command line",
                f"study {study.label!r} ({study.log_root}) has no steering_relative_norm for multiplier(s) "
                f"{', '.join(lacking)}: its deployments did not come from `steerbench serve` with a vector whose "
                "residual norm is known (serve --scale residual, or a vector file with residual_norms)",
                field="--axis",
            )


# ---------------------------------------------------------------- figures


def _series_keys(studies: Sequence[Study]) -> list[tuple[str, str]]:
    """Every benchmark (subset) with a headline in any study, in the first study's order."""
    keys: list[tuple[str, str]] = []
    for study in studies:
        keys += [s.key for s in study.analysis.series if s.key not in keys]
    return keys


def _series(study: Study, key: tuple[str, str]) -> Series | None:
    return next((s for s in study.analysis.series if s.key == key), None)


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return [palette(i % palette.N) for i in range(count)]


def headline_figure(studies: Sequence[Study], axis: str) -> Any:
    """Headline score per benchmark against the axis, one line per study, 95% intervals."""
    keys = _series_keys(studies)
    colours = _colours(len(studies))
    markers = "osD^vP*X"
    with styled():
        rows, cols = grid_shape(max(len(keys), 1), 3)
        figure = new_figure(3.4 * cols, 2.5 * rows + 0.9)
        axes = figure.subplots(rows, cols, squeeze=False)
        if not keys:
            note(axes[0, 0], "no benchmark has a headline metric")
        for ax, key in zip(axes.flat, keys):
            title = ""
            for i, study in enumerate(studies):
                series = _series(study, key)
                if series is None:
                    continue
                title = series.label
                positions = axis_values(study.analysis, axis)
                name = series.headline.name
                points = [
                    (positions[v], cell.intervals[name])
                    for v in study.analysis.multipliers
                    if v in positions
                    and (cell := study.analysis.cell(series, v)) is not None
                    and name in cell.intervals
                ]
                if not points:
                    continue
                xs = [x for x, _ in points]
                ys = [iv.estimate for _, iv in points]
                errors = [[iv.estimate - iv.low for _, iv in points], [iv.high - iv.estimate for _, iv in points]]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=errors,
                    color=colours[i],
                    marker=markers[i % len(markers)],
                    markersize=4,
                    capsize=2,
                    linewidth=1.2,
                    label=study.label,
                    alpha=0.9,
                )
                ax.set_ylabel(metric_label(name))
            ax.axvline(0.0, color=ZERO_GREY, linestyle="--", linewidth=0.8, zorder=0)
            ax.set_ylim(-0.04, 1.04)
            ax.set_xlabel(AXIS_LABELS[axis])
            ax.set_title(title)
        for ax in list(axes.flat)[max(len(keys), 1) :]:
            ax.set_visible(False)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=min(max(len(labels), 1), 4), frameon=False)
        figure.suptitle("Headline score by steering, one line per study (95% intervals from the samples)")
    return figure


def health_figure(studies: Sequence[Study], axis: str) -> Any:
    """The four output-health measures, one line per study: the mean over the benchmarks every study has."""
    shared = [key for key in _series_keys(studies) if all(_series(s, key) is not None for s in studies)]
    colours = _colours(len(studies))
    with styled():
        figure = new_figure(9.5, 7.2)
        axes = figure.subplots(2, 2, squeeze=False)
        for ax, (column, title, ylabel) in zip(axes.flat, HEALTH_PANELS):
            for i, study in enumerate(studies):
                positions = axis_values(study.analysis, axis)
                xs, ys = [], []
                for value in study.analysis.multipliers:
                    numbers = [n for key in shared if (n := _health(study, key, value, column)) is not None]
                    if value in positions and numbers:
                        xs.append(positions[value])
                        ys.append(sum(numbers) / len(numbers))
                ax.plot(xs, ys, color=colours[i], marker="o", markersize=4, label=study.label)
            ax.axvline(0.0, color=ZERO_GREY, linestyle="--", linewidth=0.8, zorder=0)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            ax.set_xlabel(AXIS_LABELS[axis])
            if column != "output_tokens_mean":
                ax.set_ylim(-0.03, 1.03)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=min(max(len(labels), 1), 4), frameon=False)
        figure.suptitle(f"Output health, one line per study (mean over the {len(shared)} benchmarks all studies ran)")
    return figure


def _health(study: Study, key: tuple[str, str], value: float, column: str) -> float | None:
    cell = study.analysis.cells.get((key[0], key[1], value))
    number = cell.row.get(column) if cell is not None else None
    return float(number) if isinstance(number, (int, float)) and math.isfinite(number) else None


def has_health(studies: Sequence[Study]) -> bool:
    return any(
        _health(s, key, v, "output_truncated_rate") is not None
        for s in studies
        for key in _series_keys([s])
        for v in s.analysis.multipliers
    )


# ---------------------------------------------------------------- tables and files


def safe_range_frame(studies: Sequence[Study]) -> Any:
    import pandas as pd

    rows = [
        {"study": s.label, "log_root": s.log_root, **r.row()}
        for s in studies
        if s.analysis.steering is not None
        for r in s.analysis.steering.ranges
    ]
    from ..results.safe_range import SAFE_RANGE_COLUMNS

    return pd.DataFrame(rows, columns=["study", "log_root", *SAFE_RANGE_COLUMNS])


def paired_frame(studies: Sequence[Study]) -> Any:
    import pandas as pd

    frames = [s.analysis.paired_frame().assign(study=s.label) for s in studies]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame[["study", *[c for c in frame.columns if c != "study"]]]


def scores_frame(studies: Sequence[Study]) -> Any:
    import pandas as pd

    frame = pd.concat([s.analysis.scores_frame().assign(study=s.label) for s in studies], ignore_index=True)
    return frame[["study", *[c for c in frame.columns if c != "study"]]]


def write_comparison(studies: Sequence[Study], out: str | Path, axis: str = "multiplier") -> CompareFiles:
    """out/compare.html, out/figures/compare_*.png|pdf and the three CSVs (each with a study column)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"compare_headline": save(headline_figure(studies, axis), out / "figures", "compare_headline")}
    if has_health(studies):
        figures["compare_output_health"] = save(health_figure(studies, axis), out / "figures", "compare_output_health")
    safe_csv, paired_csv, scores_csv = out / SAFE_RANGE_CSV, out / PAIRED_CSV, out / SCORES_CSV
    safe_range_frame(studies).to_csv(safe_csv, index=False)
    paired_frame(studies).to_csv(paired_csv, index=False)
    scores_frame(studies).to_csv(scores_csv, index=False)
    page = out / COMPARE_PAGE
    page.write_text(render_comparison(studies, figures, axis), encoding="utf-8")
    return CompareFiles(page, figures, safe_csv, paired_csv, scores_csv)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ci(change: float, low: float, high: float) -> str:
    if any(isinstance(x, float) and math.isnan(x) for x in (change, low, high)):
        return ""
    return f"{change:+.3f} [{low:+.3f}, {high:+.3f}]"


def render_comparison(studies: Sequence[Study], figures: dict[str, list[Path]], axis: str) -> str:
    from .html import CSS

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>steerbench: {len(studies)} studies compared</title><style>{CSS}</style></head><body>",
        f"<h1>{len(studies)} studies compared</h1>",
        "<ul>",
    ]
    parts += [
        f"<li><b>{_e(s.label)}</b>: <code>{_e(s.log_root)}</code>, multipliers "
        f"{_e(', '.join(s.analysis.multipliers.values()))}</li>"
        for s in studies
    ]
    parts.append(
        "</ul><p class='muted'>Each study is analysed on its own, against its own multiplier 0, with its "
        "own Holm family, exactly as its own <code>steerbench report</code>; x axis: "
        f"{_e(AXIS_LABELS[axis])}.</p>"
    )
    for name, paths in figures.items():
        png = next(p for p in paths if p.suffix == ".png")
        encoded = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f'<figure id="{_e(name)}"><img alt="{_e(name)}" src="data:image/png;base64,{encoded}"></figure>')
    parts.append(_safe_range_table(studies))
    parts.append(_paired_tables(studies))
    parts.append("</body></html>")
    return "\n".join(parts)


def _safe_range_table(studies: Sequence[Study]) -> str:
    keys = _series_keys(studies)
    margins = {s.analysis.steering.margin for s in studies if s.analysis.steering is not None}
    head = "".join(f"<th>{_e(s.label)}</th>" for s in studies)
    rows = []
    for key in keys:
        label = f"{key[0]}[{key[1]}]" if key[1] else key[0]
        cells = []
        for study in studies:
            found = next(
                (
                    r
                    for r in (study.analysis.steering.ranges if study.analysis.steering else [])
                    if (r.benchmark, r.subset) == key
                ),
                None,
            )
            cells.append(
                f"<td>{_e(found.lowest_safe)} … {_e(found.highest_safe)}</td>"
                if found
                else "<td class='missing'>-</td>"
            )
        rows.append(f"<tr><td class='name'>{_e(label)}</td>{''.join(cells)}</tr>")
    margin = ", ".join(f"{m:g}" for m in sorted(margins)) or "-"
    return (
        f"<h2>Safe ranges side by side</h2><p class='muted'>Each study's own safe range (non-inferiority "
        f"margin {margin} on the 0-1 scale; see a study's own report for the method).</p>"
        f"<table><tr><th class='name'>benchmark</th>{head}</tr>{''.join(rows)}</table>"
    )


def _paired_tables(studies: Sequence[Study]) -> str:
    parts = [
        "<h2>Paired changes against each study's own multiplier 0</h2>",
        "<p class='muted'>Change of the headline (0-1 scale) with its 95% interval; bold: significant after "
        "the study's own Holm correction.</p>",
    ]
    for study in studies:
        analysis = study.analysis
        values = [v for v in analysis.multipliers if v != BASELINE]
        head = "".join(f"<th>{_e(analysis.multipliers[v])}</th>" for v in values)
        rows = []
        for series in analysis.series:
            cells = []
            for value in values:
                row = analysis.paired_for(series, value)
                if row is None:
                    cells.append("<td class='missing'>-</td>")
                    continue
                sig = " class='sig'" if row.significant else ""
                cells.append(f"<td{sig}>{_e(_ci(row.change, row.ci_low, row.ci_high))}</td>")
            rows.append(f"<tr><td class='name'>{_e(series.label)}</td>{''.join(cells)}</tr>")
        parts.append(
            f"<h3>{_e(study.label)}</h3><table><tr><th class='name'>benchmark</th>{head}</tr>{''.join(rows)}</table>"
        )
    return "\n".join(parts)
