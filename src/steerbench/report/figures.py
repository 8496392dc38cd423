"""The report's figures, drawn from an Analysis.

Each function takes an Analysis and returns a matplotlib Figure drawn in the shared style
(steerbench.report.plotting); `steerbench report` saves them, the
notebook shows them inline.

All values are on a 0-1 scale (XSTest's 0-100 refusal rate is divided by 100) and every
interval is a 95% interval computed from the samples (steerbench.results.stats).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..results.analysis import BASELINE, Analysis, Series, metric_label
from .plotting import (
    CHANGE_COLORMAP,
    FLAG_COLOR,
    MISSING_GREY,
    ZERO_GREY,
    MultiplierStyle,
    grid_shape,
    multiplier_styles,
    new_figure,
    note,
    styled,
)
from ..results.scores import IFEVAL_METRICS, SYCOPHANCY_METRICS
from ..results.stats import ALPHA, Z_95

Figure = Any
# flags that mark a drawn point as one to check (missing and failed cells are not drawn at all)
POINT_FLAGS = ("suspicious", "score mismatch", "partial", "sample count")


def _styles(analysis: Analysis) -> dict[float, MultiplierStyle]:
    return multiplier_styles(list(analysis.multipliers))


def _status(analysis: Analysis, series: Series, value: float) -> str:
    label = analysis.multipliers[value]
    for row in analysis.aggregate.rows:
        if (row["benchmark"], row.get("subset") or "") == series.key and str(row["multiplier"]) == label:
            return (
                "missing" if row.get("status") == "missing" else ("failed" if row.get("status") != "success" else "ok")
            )
    return "missing"


def _multiplier_legend(figure: Figure, analysis: Analysis, series: list[Series], bars: bool = False) -> None:
    """Multipliers, then 'missing' and 'flagged' when the series drawn have such cells."""
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Artist] = []
    for value, style in _styles(analysis).items():
        label = f"m = {analysis.multipliers[value]}"
        if bars:
            handles.append(
                Patch(
                    facecolor=style.color,
                    edgecolor=style.edge,
                    hatch=style.hatch,
                    hatchcolor=style.hatch_color,
                    label=label,
                )
            )
        else:
            handles.append(
                Line2D(
                    [],
                    [],
                    color=style.color,
                    marker=style.marker,
                    markeredgecolor=style.edge,
                    linestyle="none",
                    label=label,
                )
            )
    if any(analysis.cell(s, v) is None for s in series for v in analysis.multipliers):
        handles.append(Line2D([], [], color="black", marker="x", linestyle="none", label="missing / failed cell"))
    if not bars and any(
        f.kind in POINT_FLAGS for s in series for v in analysis.multipliers for f in analysis.flagged(s, v)
    ):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                markerfacecolor="none",
                markeredgecolor=FLAG_COLOR,
                markersize=11,
                linestyle="none",
                label="flagged: check this cell",
            )
        )
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)


def _hide_unused(axes: Any, used: int) -> None:
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)


# ---------------------------------------------------------------- headline scores


def accuracy_by_benchmark(analysis: Analysis) -> Figure:
    """Headline score against multiplier, one panel per benchmark (subset), with 95% intervals."""
    with styled():
        rows, cols = grid_shape(max(len(analysis.series), 1), 3)
        figure = new_figure(3.4 * cols, 2.5 * rows + 0.9)
        axes = figure.subplots(rows, cols, squeeze=False)
        if not analysis.series:
            note(axes[0, 0], "no benchmark has a headline metric")
        for ax, series in zip(axes.flat, analysis.series):
            _headline_panel(ax, analysis, series)
        _hide_unused(axes, max(len(analysis.series), 1))
        figure.suptitle("Headline score by steering multiplier (95% intervals from the samples)")
        _multiplier_legend(figure, analysis, analysis.series)
    return figure


def _headline_panel(ax: Any, analysis: Analysis, series: Series) -> None:
    styles = _styles(analysis)
    name = series.headline.name
    xs, ys = [], []
    for value in analysis.multipliers:
        cell = analysis.cell(series, value)
        interval = cell.intervals.get(name) if cell else None
        if interval is None:
            xs.append(value)
            ys.append(math.nan)  # a gap in the line: nothing is interpolated over a missing cell
            ax.plot(value, 0.03, marker="x", color="black", linestyle="none")
            ax.annotate(
                _status(analysis, series, value) if cell is None else "no scores",
                (value, 0.03),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=6.5,
                rotation=90,
            )
            continue
        style = styles[value]
        xs.append(value)
        ys.append(interval.estimate)
        ax.errorbar(
            value,
            interval.estimate,
            yerr=[[interval.estimate - interval.low], [interval.high - interval.estimate]],
            marker=style.marker,
            color=style.color,
            markeredgecolor=style.edge,
            ecolor=style.edge,
            linestyle="none",
            zorder=3,
        )
        if any(f.kind in POINT_FLAGS for f in analysis.flagged(series, value)):
            ax.plot(
                value,
                interval.estimate,
                marker="o",
                markersize=14,
                markerfacecolor="none",
                markeredgecolor=FLAG_COLOR,
                markeredgewidth=1.3,
                linestyle="none",
                zorder=4,
            )
            ax.annotate(
                "!",
                (value, interval.estimate),
                textcoords="offset points",
                xytext=(7, 5),
                fontweight="bold",
                color=FLAG_COLOR,
            )
    ax.plot(xs, ys, color="#b3b3b3", zorder=1)
    base = analysis.cell(series, BASELINE)
    if base is not None and name in base.intervals:
        ax.axhline(base.intervals[name].estimate, color=ZERO_GREY, linestyle="--", linewidth=0.8, zorder=0)
    top = max(
        [1.0]
        + [
            c.intervals[name].high
            for c in analysis.cells.values()
            if (c.benchmark, c.subset) == series.key and name in c.intervals
        ]
    )
    ax.set_ylim(-0.04, top + 0.05)
    _multiplier_axis(ax, analysis)
    scale = f" (÷{series.headline.scale:g})" if series.headline.scale != 1 else ""
    ax.set_ylabel(metric_label(name) + scale)
    ax.set_title(series.label)


def _multiplier_axis(ax: Any, analysis: Analysis) -> None:
    """Ticks at the multipliers; where `steerbench serve`'s provenance gives |m·v| / residual norm for
    every multiplier, each tick shows it too (the unit that compares models, layers and vectors)."""
    from .compare import axis_values

    values = list(analysis.multipliers)
    relative = axis_values(analysis, "relative-norm")
    if len(relative) == len(values) and any(relative.values()):
        ax.set_xticks(values, [f"{analysis.multipliers[v]}\n{abs(relative[v]):.2g}" for v in values])
        ax.set_xlabel("multiplier (below it: |m·v| / residual norm)")
        return
    ax.set_xticks(values, list(analysis.multipliers.values()))
    ax.set_xlabel("multiplier")


# ---------------------------------------------------------------- grouped bars


Group = tuple[str, Series, str]  # (x label, series, metric name)


def _grouped_bars(ax: Any, analysis: Analysis, groups: list[Group]) -> None:
    styles = _styles(analysis)
    values = list(analysis.multipliers)
    width = 0.8 / max(len(values), 1)
    for g, (_, series, metric) in enumerate(groups):
        for j, value in enumerate(values):
            x = g + (j - (len(values) - 1) / 2) * width
            cell = analysis.cell(series, value)
            interval = cell.intervals.get(metric) if cell else None
            if interval is None:
                ax.plot(x, 0.02, marker="x", color="black", markersize=4, linestyle="none")
                continue
            style = styles[value]
            ax.bar(
                x,
                interval.estimate,
                width=width * 0.92,
                color=style.color,
                hatch=style.hatch,
                hatchcolor=style.hatch_color,
                edgecolor=style.edge,
                linewidth=0.5,
            )
            ax.errorbar(
                x,
                interval.estimate,
                yerr=[[interval.estimate - interval.low], [interval.high - interval.estimate]],
                color="black",
                linewidth=0.8,
                linestyle="none",
                capsize=1.5,
            )
            if interval.estimate < 0.015:
                ax.text(x, 0.01, "0", ha="center", va="bottom", fontsize=6.5)
    ax.set_xticks(range(len(groups)), [label for label, _, _ in groups])
    ax.set_ylim(0, 1.08)
    ax.grid(axis="x", visible=False)


def _family_figure(analysis: Analysis, headline: str, metrics: tuple[str, ...], title: str, missing: str) -> Figure:
    chosen = [s for s in analysis.series if s.headline.name == headline]
    with styled():
        figure = new_figure(
            max(6.5, 1.3 * len(metrics) * max(len(analysis.multipliers), 1) / 4), 2.9 * max(len(chosen), 1) + 0.9
        )
        axes = figure.subplots(max(len(chosen), 1), 1, squeeze=False)
        if not chosen:
            note(axes[0, 0], missing)
        for ax, series in zip(axes.flat, chosen):
            _grouped_bars(ax, analysis, [(metric_label(m), series, m) for m in metrics])
            ax.set_title(series.label)
            ax.set_ylabel("score (0-1)")
        figure.suptitle(title)
        _multiplier_legend(figure, analysis, chosen, bars=True)
    return figure


def ifeval_metrics_by_multiplier(analysis: Analysis) -> Figure:
    """IFEval's prompt- and instruction-level accuracies and final accuracy at every multiplier."""
    return _family_figure(
        analysis,
        "final_acc",
        IFEVAL_METRICS,
        "IFEval-style metrics by multiplier (95% intervals from the samples)",
        "no IFEval-style logs (final_acc) in this log root",
    )


def sycophancy_metrics_by_multiplier(analysis: Analysis) -> Figure:
    """Sycophancy's first-answer accuracy, admitted mistakes, confidence, apologies and truthfulness."""
    return _family_figure(
        analysis,
        "truthfulness",
        SYCOPHANCY_METRICS,
        "Sycophancy-style metrics by multiplier (95% intervals from the samples)\n"
        "confidence and apologize rate are over the samples first answered right",
        "no Sycophancy-style logs (truthfulness) in this log root",
    )


def xstest_by_multiplier(analysis: Analysis) -> Figure:
    """Refusal rate of every refusal benchmark, its subsets (safe, unsafe) side by side."""
    chosen = [s for s in analysis.series if s.headline.name == "refusal_rate"]
    benchmarks = list(dict.fromkeys(s.benchmark for s in chosen))
    with styled():
        figure = new_figure(6.5, 2.9 * max(len(benchmarks), 1) + 0.9)
        axes = figure.subplots(max(len(benchmarks), 1), 1, squeeze=False)
        if not benchmarks:
            note(axes[0, 0], "no refusal-rate (XSTest-style) logs in this log root")
        for ax, benchmark in zip(axes.flat, benchmarks):
            groups = [
                (f"{s.subset or s.benchmark} prompts", s, "refusal_rate") for s in chosen if s.benchmark == benchmark
            ]
            _grouped_bars(ax, analysis, groups)
            ax.set_title(f"{benchmark}: refusal rate (full + partial refusals)")
            ax.set_ylabel("refusal rate (0-1)")
        figure.suptitle("Refusal rate by multiplier (reported 0-100, shown as a fraction; 95% intervals)")
        _multiplier_legend(figure, analysis, chosen, bars=True)
    return figure


# ---------------------------------------------------------------- changes


def delta_heatmap(analysis: Analysis) -> Figure:
    """Benchmark x multiplier: paired change of the headline from multiplier 0, in percentage points."""
    from matplotlib.patches import Rectangle

    rows = [s for s in analysis.series if any((p.benchmark, p.subset) == s.key for p in analysis.paired)]
    columns = [v for v in analysis.multipliers if v != BASELINE]
    with styled():
        figure = new_figure(1.0 + 0.85 * max(len(columns), 3) + 2.2, 0.9 + 0.42 * max(len(rows), 2))
        ax = figure.subplots()
        if not rows or not columns:
            note(ax, "no paired changes: every benchmark needs a multiplier-0 cell and another multiplier")
            return figure
        grid = np.full((len(rows), len(columns)), np.nan)
        for i, series in enumerate(rows):
            for j, value in enumerate(columns):
                paired = analysis.paired_for(series, value)
                if paired is not None and math.isfinite(paired.change):
                    grid[i, j] = paired.change * 100
        largest = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        largest = largest or 1.0
        from matplotlib import colormaps

        cmap = colormaps[CHANGE_COLORMAP].with_extremes(bad=MISSING_GREY)
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-largest, vmax=largest, aspect="auto")
        for i, series in enumerate(rows):
            for j, value in enumerate(columns):
                paired = analysis.paired_for(series, value)
                if not math.isfinite(grid[i, j]) or paired is None:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="#404040")
                    continue
                strong = abs(grid[i, j]) > 0.6 * largest
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:+.1f}" + ("*" if paired.significant else ""),
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if strong else "black",
                    fontweight="bold" if paired.significant else "normal",
                )
                if paired.significant:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.8))
        ax.set_xticks(range(len(columns)), [analysis.multipliers[v] for v in columns])
        ax.set_yticks(range(len(rows)), [f"{s.label} · {metric_label(s.headline.name)}" for s in rows])
        ax.set_xlabel("multiplier")
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        bar = figure.colorbar(image, ax=ax, shrink=0.9)
        bar.set_label("change from multiplier 0 (percentage points)")
        figure.suptitle(
            f"Paired change from multiplier 0 (pp)\n* and black border: significant after Holm, α = {ALPHA:g}; "
            "grey n/a: no cell"
        )
    return figure


def capability_safety_tradeoff(analysis: Analysis) -> Figure:
    """Mean capability change against each safety metric's change, one point per multiplier."""
    capability = [s for s in analysis.series if not s.is_safety]
    safety = [s for s in analysis.series if s.is_safety]
    with styled():
        rows, cols = grid_shape(max(len(safety), 1), 3)
        figure = new_figure(3.6 * cols, 3.2 * rows + 0.9)
        axes = figure.subplots(rows, cols, squeeze=False)
        if not capability or not safety:
            note(
                axes[0, 0],
                "needs at least one capability benchmark and one safety benchmark "
                "(category 'Safety', or a refusal-rate or truthfulness metric)",
            )
        else:
            points = _capability_changes(analysis, capability)
            for ax, series in zip(axes.flat, safety):
                _tradeoff_panel(ax, analysis, series, points, capability)
        _hide_unused(axes, max(len(safety), 1))
        figure.suptitle(
            "Capability cost against safety change, per multiplier (paired changes from multiplier 0, 95% intervals)"
        )
        _multiplier_legend(figure, analysis, analysis.series)
    return figure


def _capability_changes(analysis: Analysis, capability: list[Series]) -> dict[float, tuple[float, float, int]]:
    """multiplier -> (mean change in pp, its 95% half-width, benchmarks averaged). Benchmarks use
    different samples, so their changes are independent and their variances add."""
    points = {}
    for value in analysis.multipliers:
        if value == BASELINE:
            continue
        changes = [
            p for s in capability if (p := analysis.paired_for(s, value)) is not None and math.isfinite(p.change)
        ]
        if not changes:
            continue
        ses = [(p.ci_high - p.ci_low) / (2 * Z_95) for p in changes]
        mean = float(np.mean([p.change for p in changes]))
        half = Z_95 * math.sqrt(sum(se**2 for se in ses)) / len(changes)
        points[value] = (mean * 100, half * 100, len(changes))
    return points


def _flagged_behind(analysis: Analysis, series: list[Series], value: float) -> bool:
    return any(f.kind in POINT_FLAGS for s in series for f in analysis.flagged(s, value))


def _tradeoff_panel(
    ax: Any, analysis: Analysis, series: Series, points: dict[float, tuple[float, float, int]], capability: list[Series]
) -> None:
    capability_count = len(capability)
    styles = _styles(analysis)
    path: list[tuple[float, float]] = []
    for value in analysis.multipliers:
        if value == BASELINE:
            style = styles[value]
            ax.plot(
                0, 0, marker=style.marker, color=style.color, markeredgecolor=style.edge, linestyle="none", zorder=3
            )
            path.append((0.0, 0.0))
            continue
        paired = analysis.paired_for(series, value)
        if value not in points or paired is None or not math.isfinite(paired.change):
            continue
        x, x_half, used = points[value]
        y = paired.change * 100
        style = styles[value]
        ax.errorbar(
            x,
            y,
            xerr=x_half,
            yerr=[[y - paired.ci_low * 100], [paired.ci_high * 100 - y]],
            marker=style.marker,
            color=style.color,
            markeredgecolor=style.edge,
            ecolor=style.edge,
            linestyle="none",
            zorder=3,
        )
        suffix = f" ({used}/{capability_count})" if used < capability_count else ""
        if _flagged_behind(analysis, [series, *capability], value):
            ax.plot(
                x,
                y,
                marker="o",
                markersize=14,
                markerfacecolor="none",
                markeredgecolor=FLAG_COLOR,
                markeredgewidth=1.3,
                linestyle="none",
                zorder=4,
            )
        offset, align = ((5, 4), "left") if value > 0 else ((-5, -10), "right")
        ax.annotate(
            analysis.multipliers[value] + suffix,
            (x, y),
            textcoords="offset points",
            xytext=offset,
            ha=align,
            fontsize=7,
        )
        path.append((x, y))
    if path:
        ax.plot(*zip(*path), color="#b3b3b3", zorder=1)
    ax.axhline(0, color=ZERO_GREY, linewidth=0.8)
    ax.axvline(0, color=ZERO_GREY, linewidth=0.8)
    ax.set_title(f"{series.label}: {metric_label(series.headline.name)}")
    ax.set_xlabel(f"mean capability change (pp, {capability_count} benchmark(s))")
    ax.set_ylabel("safety metric change (pp)")


# ---------------------------------------------------------------- output health


HEALTH_PANELS = (
    ("output_truncated_rate", "truncated (stopped at the token limit)", "share of samples", "truncated"),
    ("output_empty_rate", "empty answers", "share of samples", "empty"),
    (
        "output_repetition",
        "repetition (characters in a 16-character stretch said twice before)",
        "mean share of characters",
        None,
    ),
    ("output_tokens_mean", "output tokens", "mean tokens per sample", None),
)


def _health_value(analysis: Analysis, series: Series, value: float, column: str) -> float:
    cell = analysis.cell(series, value)
    number = cell.row.get(column) if cell is not None else None
    return float(number) if isinstance(number, (int, float)) and math.isfinite(number) else math.nan


def has_health(analysis: Analysis) -> bool:
    return any(
        math.isfinite(_health_value(analysis, s, v, "output_truncated_rate"))
        for s in analysis.series
        for v in analysis.multipliers
    )


def output_health_by_multiplier(analysis: Analysis) -> Figure:
    """The four output-health measures against multiplier, one panel each, one line per benchmark."""
    from matplotlib import colormaps

    flagged = {
        (h.benchmark, h.subset, h.multiplier_value, h.measure)
        for h in (analysis.steering.health if analysis.steering else [])
        if h.flagged
    }
    shown = [
        s
        for s in analysis.series
        if any(math.isfinite(_health_value(analysis, s, v, "output_truncated_rate")) for v in analysis.multipliers)
    ]
    colours = colormaps["tab20"] if len(shown) > 10 else colormaps["tab10"]
    markers = "osD^vP*Xhp<>"
    with styled():
        figure = new_figure(9.5, 7.2)
        axes = figure.subplots(2, 2, squeeze=False)
        for ax, (column, title, ylabel, measure) in zip(axes.flat, HEALTH_PANELS):
            for i, series in enumerate(shown):
                xs = list(analysis.multipliers)
                ys = [_health_value(analysis, series, v, column) for v in xs]
                colour = colours(i % colours.N)
                ax.plot(xs, ys, color=colour, marker=markers[i % len(markers)], markersize=4, label=series.label)
                for x, y in zip(xs, ys):
                    if measure and (series.benchmark, series.subset, x, measure) in flagged:
                        ax.plot(
                            x,
                            y,
                            marker="o",
                            markersize=11,
                            markerfacecolor="none",
                            markeredgecolor=FLAG_COLOR,
                            markeredgewidth=1.3,
                            linestyle="none",
                            zorder=4,
                        )
            ax.axvline(BASELINE, color=ZERO_GREY, linestyle="--", linewidth=0.8, zorder=0)
            _multiplier_axis(ax, analysis)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            if column != "output_tokens_mean":
                ax.set_ylim(-0.03, 1.03)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if flagged:
            from matplotlib.lines import Line2D

            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    markerfacecolor="none",
                    markeredgecolor=FLAG_COLOR,
                    markersize=10,
                    linestyle="none",
                )
            )
            labels.append(f"share significantly above multiplier 0 (paired, Holm, α = {ALPHA:g})")
        figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
        figure.suptitle("Output health by multiplier (the steered model's final answers)")
    return figure


# ---------------------------------------------------------------- adaptive studies

ADAPTIVE_MARKERS = {
    "non-inferior": ("o", "#1b7837"),
    "harmful": ("X", "#b2182b"),
    "precise": ("s", "#2166ac"),
    "exhausted": ("D", "#555555"),
    "beyond-harmful": ("x", "#999999"),
    "open": ("^", "#e08214"),
}


def _adaptive_cells(analysis: Analysis) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per series: the adaptive cells != 0 with an interval (results.adaptive's aggregate columns)."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in analysis.aggregate.rows:
        low, high = row.get("adaptive_low"), row.get("adaptive_high")
        if (
            row.get("adaptive_state")
            and isinstance(low, (int, float))
            and isinstance(high, (int, float))
            and math.isfinite(low)
            and math.isfinite(high)
            and float(row["multiplier"]) != BASELINE
        ):
            found.setdefault((row["benchmark"], row["subset"]), []).append(row)
    return found


def adaptive_harm_intervals(analysis: Analysis) -> Figure:
    """An adaptive study's anytime-valid intervals of the mean paired harm, one panel per series."""
    from ..core.cells import cell_label

    cells = _adaptive_cells(analysis)
    margin = next(
        (
            float(r["adaptive_margin"])
            for rs in cells.values()
            for r in rs
            if isinstance(r.get("adaptive_margin"), (int, float))
        ),
        None,
    )
    with styled():
        rows, cols = grid_shape(max(len(cells), 1), 3)
        figure = new_figure(3.4 * cols, 2.5 * rows + 0.9)
        axes = figure.subplots(rows, cols, squeeze=False)
        for ax, ((benchmark, subset), series) in zip(axes.flat, sorted(cells.items())):
            for row in series:
                x, low, high = float(row["multiplier"]), float(row["adaptive_low"]), float(row["adaptive_high"])
                marker, colour = ADAPTIVE_MARKERS.get(str(row["adaptive_state"]), ("o", "#333333"))
                ax.plot([x, x], [low, high], color=colour, linewidth=2)
                harm = row.get("adaptive_harm")
                centre = float(harm) if isinstance(harm, (int, float)) and math.isfinite(harm) else (low + high) / 2
                ax.plot(x, centre, marker=marker, color=colour, linestyle="none")
                ax.annotate(
                    str(row.get("adaptive_samples", "")),
                    (x, high),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    fontsize=7,
                    color="#404040",
                )
            ax.axhline(0, color=ZERO_GREY, linewidth=0.8, zorder=0)
            if margin is not None:
                ax.axhline(margin, color=FLAG_COLOR, linestyle="--", linewidth=0.8, zorder=0)
            _multiplier_axis(ax, analysis)
            ax.set_title(cell_label(benchmark, subset))
            ax.set_ylabel("mean paired harm")
        _hide_unused(axes, max(len(cells), 1))
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker=m, color=c, linestyle="none") for m, c in ADAPTIVE_MARKERS.values()]
        figure.legend(handles, list(ADAPTIVE_MARKERS), loc="outside lower center", ncols=6, frameon=False)
        figure.suptitle(
            "Adaptive study: anytime-valid intervals of the harm against multiplier 0 (number: samples used)"
        )
    return figure


def unavailable(name: str, analysis: Analysis) -> str | None:
    """Why figure `name` would have no data (it is then left out of the report), or None."""
    headlines = {s.headline.name for s in analysis.series}
    if name == "accuracy_by_benchmark" and not analysis.series:
        return "no benchmark has a headline metric"
    if name == "ifeval_metrics_by_multiplier" and "final_acc" not in headlines:
        return "no IFEval-style logs (final_acc) in this log root"
    if name == "sycophancy_metrics_by_multiplier" and "truthfulness" not in headlines:
        return "no Sycophancy-style logs (truthfulness) in this log root"
    if name == "xstest_by_multiplier" and "refusal_rate" not in headlines:
        return "no refusal-rate (XSTest-style) logs in this log root"
    if name == "delta_heatmap" and not analysis.paired:
        return "no paired changes: no benchmark has a multiplier-0 cell and another multiplier"
    if name == "capability_safety_tradeoff" and not (
        any(s.is_safety for s in analysis.series) and any(not s.is_safety for s in analysis.series)
    ):
        return "needs at least one capability benchmark and one safety benchmark"
    if name == "adaptive_harm_intervals" and not _adaptive_cells(analysis):
        return "not an adaptive study (steerbench run --adaptive)"
    if name == "output_health_by_multiplier" and not has_health(analysis):
        return "no log has output-health records (logs written before steerbench recorded them)"
    return None


FIGURES: dict[str, Callable[[Analysis], Figure]] = {
    "accuracy_by_benchmark": accuracy_by_benchmark,
    "ifeval_metrics_by_multiplier": ifeval_metrics_by_multiplier,
    "sycophancy_metrics_by_multiplier": sycophancy_metrics_by_multiplier,
    "xstest_by_multiplier": xstest_by_multiplier,
    "delta_heatmap": delta_heatmap,
    "capability_safety_tradeoff": capability_safety_tradeoff,
    "output_health_by_multiplier": output_health_by_multiplier,
    "adaptive_harm_intervals": adaptive_harm_intervals,
}

# figures drawn only for studies of their kind, and not listed as left out elsewhere
ONLY_WHERE_RELEVANT = frozenset({"adaptive_harm_intervals"})

CAPTIONS: dict[str, str] = {
    "adaptive_harm_intervals": "Adaptive study: each cell's mean paired harm against multiplier 0 (per metric "
    "direction, 0-1 scale) with its anytime-valid interval (betting confidence sequence, "
    "alpha 0.05 split over the cells), the marker its state, the number the samples it "
    "used. Dashed: the margin. A decided cell's interval is cut at the margin.",
    "accuracy_by_benchmark": "Each benchmark's headline metric (accuracy; IFEval's final_acc; XSTest's refusal rate "
    "divided by 100; Sycophancy's truthfulness) at every multiplier. Bars: 95% intervals from "
    "the samples. Dashed line: multiplier 0. Ringed '!': a flagged cell. x: no usable log.",
    "ifeval_metrics_by_multiplier": "IFEval's four accuracies and their mean (final_acc). Instruction-level intervals "
    "are clustered by prompt.",
    "sycophancy_metrics_by_multiplier": "Sycophancy: how often the first answer is right, how often the model admits a "
    "mistake when challenged, confidence and apologize rate (over the samples first "
    "answered right) and truthfulness.",
    "xstest_by_multiplier": "Refusal rate (full and partial refusals) on safe and unsafe prompts. Higher is better on "
    "unsafe prompts and worse on safe ones (over-refusal). XSTest reports 0-100; shown as a fraction.",
    "delta_heatmap": "Paired change of each headline metric from multiplier 0 in percentage points. * and a black "
    "border: the 95% paired interval excludes 0 after Holm's correction across the whole grid.",
    "capability_safety_tradeoff": "One point per multiplier: x is the mean paired change over the capability "
    "benchmarks, y the paired change of one safety metric. The grey line joins the "
    "multipliers in order through multiplier 0 at the origin. (k/n): the capability mean "
    "uses only the k benchmarks that have that cell.",
    "output_health_by_multiplier": "The steered model's final answers at every multiplier, one line per benchmark: "
    "share truncated at the token limit (stop reason max_tokens or model_length), "
    "share empty (whitespace only), mean share of characters in a 16-character stretch said twice "
    "before (any text: emoji, code, whitespace), mean output "
    "tokens. Ringed: a truncated or empty share significantly above multiplier 0's "
    "(exact one-sided sign test over the same samples, Holm). A truncated share that "
    "rises with |m| is the usual sign of a degenerate model.",
}
