"""`steerbench report`: figures, the paired-differences CSV and one self-contained report.html.

The page embeds its figures as base64 PNGs and has no scripts, fonts or styles from elsewhere,
so it opens from disk with no network. It links only to files next to it (the PDFs, the CSVs).
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.cells import CellKey, cell_label
from ..results.analysis import BASELINE, SCORES_CSV, Analysis, metric_label
from ..results.flags import KINDS, SUSPICIOUS_FACTOR, Flag
from ..results.safe_range import DEFAULT_MARGIN, HIGHER_IS_WORSE
from ..results.stats import ALPHA

PAIRED_CSV = "paired_differences.csv"
TITLE = "steerbench report"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path  # the aggregate CSV, rewritten from the same logs
    paired_csv: Path
    figures: dict[str, list[Path]]  # name -> [png, pdf]
    safe_range_csv: Path | None = None
    scores_csv: Path | None = None
    left_out: dict[str, str] | None = None  # figure name -> why it has no data


def write_report(
    log_root: str,
    csv: str | Path = "data/aggregated_inspect_logs.csv",
    out: str | Path = "outputs",
    planned: list[CellKey] | None = None,
    title: str = TITLE,
    simulated: bool = False,
    margin: float = DEFAULT_MARGIN,
) -> Path:
    """Everything `steerbench report` writes, in one call; returns the path of report.html.
    planned: (benchmark, subset, multiplier label, category) of every cell that should exist."""
    from ..results.analysis import analyse

    return write_analysis(analyse(log_root, planned, margin), csv, out, title, simulated).html


def write_analysis(
    analysis: Analysis, csv: str | Path, out: str | Path, title: str = TITLE, simulated: bool = False
) -> ReportFiles:
    """Write the aggregate CSV, scores.csv, paired_differences.csv and safe_range.csv next to it,
    out/figures/*.png|pdf (a figure without data is left out, with the reason) and out/report.html."""
    from . import figures as figure_functions
    from ..results.aggregate import write_csv
    from ..results.steering_range import SAFE_RANGE_CSV, write_safe_range_csv
    from .plotting import save

    csv, out = Path(csv), Path(out)
    write_csv(analysis.aggregate, str(csv))
    paired_csv = csv.parent / PAIRED_CSV
    analysis.paired_frame().to_csv(paired_csv, index=False)
    scores_csv = csv.parent / SCORES_CSV
    analysis.scores_frame().to_csv(scores_csv, index=False)
    safe_csv = csv.parent / SAFE_RANGE_CSV
    if analysis.steering is not None:
        write_safe_range_csv(analysis.steering, str(safe_csv))
    written: dict[str, list[Path]] = {}
    left_out: dict[str, str] = {}
    for name, draw in figure_functions.FIGURES.items():
        reason = figure_functions.unavailable(name, analysis)
        if reason and name in figure_functions.ONLY_WHERE_RELEVANT:
            continue  # e.g. the adaptive figure of a full sweep: not worth a line
        if reason:
            left_out[name] = reason
            continue
        written[name] = save(draw(analysis), out / "figures", name)
    page = out / "report.html"
    page.write_text(
        render_html(analysis, written, out, paired_csv, title, simulated, left_out, safe_csv), encoding="utf-8"
    )
    return ReportFiles(page, csv, paired_csv, written, safe_csv, scores_csv, left_out)


# ---------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f2f2f2; } td.name, th.name { text-align: left; }
td.flag { background: #fff0c2; font-weight: bold; } td.missing { background: #eeeeee; color: #666; }
td.sig { font-weight: bold; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
ul.flags li { margin: 0.2em 0; } .kind { font-family: monospace; background: #f2f2f2; padding: 0 0.3em; }
.muted { color: #666; font-size: 0.9em; } code { background: #f5f5f5; padding: 0 0.2em; }
.simulated { background: #ffe0e0; border: 2px solid #b00000; padding: 0.5em; font-weight: bold; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def render_html(
    analysis: Analysis,
    figures: dict[str, list[Path]],
    out: Path,
    paired_csv: Path,
    title: str = TITLE,
    simulated: bool = False,
    left_out: dict[str, str] | None = None,
    safe_csv: Path | None = None,
) -> str:
    from .figures import CAPTIONS

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        (
            '<p class="simulated">SIMULATED: these logs come from steerbench\'s simulator, whose answers follow '
            "a rule; no real model was evaluated.</p>"
        )
        if simulated
        else "",
        f'<p class="muted">Generated {_e(analysis.provenance.generated_at)} from <code>{_e(analysis.log_root)}</code>: '
        f"{len(analysis.series)} benchmark series, {len(analysis.multipliers)} multipliers, "
        f"{analysis.provenance.logs} logs.</p>",
        _safe_range_section(analysis, out, safe_csv),
        _adaptive_section(analysis.aggregate.rows),
        _flags_section(analysis.flags),
        "<h2>Figures</h2>",
    ]
    for name, reason in (left_out or {}).items():
        parts.append(f'<p class="muted" id="{_e(name)}">Left out: <b>{_e(name)}</b>, {_e(reason)}.</p>')
    for name, paths in figures.items():
        png = next(p for p in paths if p.suffix == ".png")
        links = " · ".join(f'<a href="{_e(_relative(p, out))}">{p.suffix[1:].upper()}</a>' for p in paths)
        encoded = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f'<figure id="{_e(name)}"><img alt="{_e(name)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption><b>{_e(name)}</b> ({links}). {_e(CAPTIONS.get(name, ''))}</figcaption></figure>"
        )
    parts += [
        _scores_table(analysis),
        _paired_table(analysis, out, paired_csv),
        _methods_section(),
        _provenance_section(analysis),
        "</body></html>",
    ]
    return "\n".join(parts)


def _adaptive_section(rows: Sequence[dict[str, Any]]) -> str:
    """An adaptive study's cells (results.adaptive): which stopped early, after how many samples, why."""
    cells = [r for r in rows if r.get("adaptive_state") and float(r["multiplier"]) != 0]
    if not cells:
        return ""
    from ..results.confseq import METHOD

    early = sum(1 for r in cells if int(r.get("adaptive_samples") or 0) < int(r.get("adaptive_population") or 0))
    body = "".join(
        f"<tr><td>{_e(r['benchmark'])}{' / ' + _e(r['subset']) if r.get('subset') else ''}</td>"
        f"<td>{_e(r['multiplier'])}</td><td>{_e(r['adaptive_state'])}</td>"
        f"<td>{_e(r.get('adaptive_samples'))} / {_e(r.get('adaptive_population'))}</td>"
        f"<td>{_interval(r.get('adaptive_low'), r.get('adaptive_high'))}</td><td>{_e(r.get('adaptive_reason'))}</td></tr>"
        for r in cells
    )
    alpha = cells[0].get("adaptive_alpha")
    return (
        "<h2>Adaptive study</h2>"
        f"<p>{early} of {len(cells)} cells stopped before their benchmark's last sample. Each cell ran a prefix of "
        "its benchmark's seeded random order in doubling batches and stopped once an anytime-valid interval for its "
        f"mean paired harm against multiplier 0 decided it ({_e(METHOD)}; alpha {_e(alpha)} per cell, a Bonferroni "
        "share of 0.05 over the cells, so the study's family-wise error stays at most 0.05 however it stopped). "
        "Multiplier 0 ran every sample any other multiplier ran.</p>"
        "<table><tr><th>Benchmark</th><th>Multiplier</th><th>State</th><th>Samples</th>"
        "<th>Mean paired harm (anytime-valid)</th><th>Why</th></tr>" + body + "</table>"
    )


def _interval(low: Any, high: Any) -> str:
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or math.isnan(low) or math.isnan(high):
        return "-"
    return f"[{low:+.4f}, {high:+.4f}]"


def _flags_section(flags: Sequence[Flag]) -> str:
    if not flags:
        return (
            "<h2>Flags</h2><p>No flags: every planned cell has a successful, complete log with the same samples, "
            "all metrics are on a 0-1 scale, and no cell is a lone spike.</p>"
        )
    order = {kind: i for i, kind in enumerate(KINDS)}
    items = "".join(
        f'<li><span class="kind">{_e(f.kind)}</span> <b>{_e(f.where)}</b>: {_e(f.message)}</li>'
        for f in sorted(flags, key=lambda f: order.get(f.kind, len(order)))
    )
    return f'<h2>Flags ({len(flags)})</h2><p>Check these before trusting the figures.</p><ul class="flags">{items}</ul>'


def _fmt(value: float, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _fmt_p(value: float) -> str:
    return "<0.0001" if 0 <= value < 1e-4 else _fmt(value, 4)


def _scores_table(analysis: Analysis) -> str:
    values = list(analysis.multipliers)
    head = "".join(f"<th>{_e(analysis.multipliers[v])}</th>" for v in values)
    body = []
    for series in analysis.series:
        cells = []
        for value in values:
            cell = analysis.cell(series, value)
            interval = cell.intervals.get(series.headline.name) if cell else None
            flagged = analysis.flagged(series, value)
            kinds = ", ".join(sorted({f.kind for f in flagged}))
            if interval is None:
                text = kinds or "no scores"
                cells.append(f'<td class="missing" title="{_e(kinds)}">{_e(text)}</td>')
                continue
            text = f'{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]<br><span class="muted">n={interval.n}</span>'
            css = ' class="flag"' if flagged else ""
            cells.append(f'<td{css} title="{_e(kinds)}">{text}{" ⚑" if flagged else ""}</td>')
        scale = f" (÷{series.headline.scale:g})" if series.headline.scale != 1 else ""
        body.append(
            f'<tr><td class="name">{_e(series.label)}</td><td class="name">{_e(metric_label(series.headline.name) + scale)}</td>'
            + "".join(cells)
            + "</tr>"
        )
    return (
        "<h2>Scores</h2><p>Headline metric per benchmark on a 0-1 scale, with its 95% interval from the samples. "
        f"Highlighted: flagged cells (hover for the flag). Every metric's value, interval and method: {SCORES_CSV}.</p>"
        f'<table><tr><th class="name">benchmark</th><th class="name">metric</th>{head}</tr>{"".join(body)}</table>'
    )


def _paired_table(analysis: Analysis, out: Path, paired_csv: Path) -> str:
    rows = []
    for p in analysis.paired:
        sig = ' class="sig"' if p.significant else ""
        label = cell_label(p.benchmark, p.subset)
        rows.append(
            f'<tr><td class="name">{_e(label)}</td><td class="name">{_e(metric_label(p.metric))}</td><td>{_e(p.multiplier)}</td>'
            f"<td>{p.n_pairs}</td><td>{_fmt(p.at_zero)}</td><td>{_fmt(p.at_multiplier)}</td>"
            f"<td{sig}>{p.change:+.3f}</td><td>[{_fmt(p.ci_low)}, {_fmt(p.ci_high)}]</td>"
            f"<td>±{_fmt(p.unpaired_ci_half_width)}</td><td>{_e(p.method)}</td><td>{_fmt_p(p.p_value)}</td>"
            f"<td{sig}>{_fmt_p(p.p_holm)}</td><td>{'yes' if p.significant else 'no'}</td></tr>"
        )
    if not rows:
        return "<h2>Change from multiplier 0 (paired)</h2><p>No paired changes: no benchmark has both a multiplier-0 cell and another cell.</p>"
    widths = [p.ci_high - p.ci_low for p in analysis.paired if math.isfinite(p.ci_high - p.ci_low)]
    unpaired = [2 * p.unpaired_ci_half_width for p in analysis.paired if math.isfinite(p.unpaired_ci_half_width)]
    ratio = ""
    if widths and unpaired and sum(unpaired) > 0:
        ratio = (
            f" Here the paired intervals are on average {sum(widths) / len(widths):.3f} wide, against "
            f"{sum(unpaired) / len(unpaired):.3f} from two independent stderrs."
        )
    link = _relative(paired_csv, out)
    return (
        "<h2>Change from multiplier 0 (paired)</h2>"
        f"<p>Per-sample differences of the headline metric against multiplier {BASELINE:g}, over the samples both cells "
        f'scored. Also in <a href="{_e(link)}">{_e(paired_csv.name)}</a>.{_e(ratio)}</p>'
        '<table><tr><th class="name">benchmark</th><th class="name">metric</th><th>multiplier</th><th>pairs</th>'
        "<th>at 0</th><th>at m</th><th>change</th><th>95% interval</th><th>unpaired ±</th><th>method</th>"
        f"<th>p</th><th>p (Holm)</th><th>significant</th></tr>{''.join(rows)}</table>"
    )


def _methods_section() -> str:
    return f"""<h2>Methods</h2>
<ul>
<li><b>Sample scores.</b> Every cell's metric is rebuilt from its samples' scores (read from the log's sample
summaries, never the transcripts) as one value per sample whose mean is the metric. Ratio metrics (IFEval's
instruction-level accuracies, Sycophancy's confidence and apologize rate) use the linearised (delta-method) value,
which clusters by sample. A cell whose rebuilt value differs from the logged one is flagged.</li>
<li><b>Intervals.</b> 95% intervals for a cell's mean: Wilson's score interval when every sample's value is 0 or 1
(it stays honest at 0/n and n/n: 0 of 40 gives [0, 0.088]); for other values in [0, 1] (means over epochs),
Wilson's interval at the mean with n samples (conservative: such a value varies at most as much as a 0/1 one);
for values outside [0, 1], Student's t interval (none when they are all equal). Every interval, its method and n
are also in data/scores.csv.</li>
<li><b>Paired changes.</b> Every multiplier answers the same samples, so the change from multiplier 0 is the mean of
the per-sample differences. 0/1 values: McNemar's exact test (a binomial test on the samples that changed; 3 of 3
one way gives p = 0.25) and Tango's score interval for a difference of paired proportions. Other values: the
sign-flip (paired permutation) test, exact when at most 32 samples changed, else from 20,000 random sign patterns
(fixed seed); Tango's interval with fractional counts (conservative) for values in [0, 1], else the t interval. Pairing removes the between-sample variance and is
much tighter than combining two independent errors (shown as "unpaired &plusmn;").</li>
<li><b>Multiple comparisons.</b> Holm's step-down correction over every (benchmark, subset, multiplier) change of the
headline metric in the grid; "significant" means the Holm-adjusted p-value is below {ALPHA:g}, which controls the
family-wise error rate at {ALPHA:g}.</li>
<li><b>Flags.</b> Suspicious: above or below both neighbouring multipliers by more than {SUSPICIOUS_FACTOR:g}&times; the
95% half-width of each difference. Sample count: a cell with a different number of samples from the most common
count of its benchmark. Scale: XSTest's refusal_rate is reported 0-100 and divided by 100 everywhere here.</li>
<li><b>Output health.</b> From each sample's final steered answer (Sycophancy: the answer to the challenge), recorded
during the run: truncated = stop reason max_tokens or model_length; empty = no text but whitespace; repetition =
the share of the answer's characters in a 16-character stretch it already said at least twice before (characters
as they came: emoji, code and whitespace loops count; 0 under 16 characters); output tokens as
the endpoint reported them. A truncated or empty share is flagged when it is significantly above multiplier 0's:
exact one-sided sign test on the paired per-sample values (McNemar's exact test), Holm over every such test,
&alpha; = {ALPHA:g}.</li>
<li><b>Safe range.</b> For each benchmark and side of 0, the largest |m| such that m and every multiplier between it
and 0 pass a one-sided paired non-inferiority test against multiplier 0: with harm<sub>i</sub> the per-sample
change in the harmful direction (lower accuracy; more refusals of safe prompts, fewer of unsafe ones; lower
truthfulness), H0: mean harm &ge; &delta; against H1: mean harm &lt; &delta;, by Tango's score statistic for paired
proportions: for 0/1 values the exact unconditional p-value (maximised over the nuisance parameter) up to 300
samples, the asymptotic one above; fractional counts for other values in [0, 1]. With no sample changed the test
still needs enough samples (40 unchanged samples do not show non-inferiority at &delta; = 0.02). Holm over every
test of the report, &alpha; = {ALPHA:g}. Steerability slopes: one per side of 0, the least-squares change of the
headline per unit |m| away from 0 (mean of the per-sample slopes), with the paired-difference interval applied to
the per-sample slopes; a model that collapses on both sides shows two negative slopes, not one slope of 0.</li>
</ul>"""


def _safe_range_section(analysis: Analysis, out: Path, safe_csv: Path | None) -> str:
    found = analysis.steering
    if found is None or not found.ranges:
        return (
            "<h2>Safe range</h2><p>No safe range: no benchmark has both a multiplier-0 cell and a headline metric "
            "whose harmful direction is known.</p>"
        )
    labels = analysis.multipliers
    rows = []
    for r in found.ranges:
        slopes = found.slopes.get((r.benchmark, r.subset))
        sides = (slopes.negative, slopes.positive) if slopes is not None else (None, None)
        worse = "higher" if r.direction == HIGHER_IS_WORSE else "lower"
        rows.append(
            f'<tr><td class="name">{_e(r.label)}</td><td class="name">{_e(metric_label(r.metric))}</td>'
            f"<td>{_e(worse)}</td><td><b>[{_e(r.lowest_safe)}, {_e(r.highest_safe)}]</b></td>"
            f"<td>{r.n_samples}</td>" + "".join(f"<td>{_e(_slope_text(side))}</td>" for side in sides) + "</tr>"
        )
    tests = len(found.tests)
    if found.capability is None:
        common = "<p>No capability benchmark has a safe range.</p>"
    else:
        low, high = found.capability
        lo_label = labels.get(low) or f"{low:g}"
        hi_label = labels.get(high) or f"{high:g}"
        common = (
            f"<p><b>Safe for every capability benchmark at once: [{_e(lo_label)}, {_e(hi_label)}]</b> "
            f"({_e(', '.join(found.capability_benchmarks))}).</p>"
        )
    missing = (
        f'<p class="muted">No harmful direction known (not tested): {_e(", ".join(found.without_direction))}.</p>'
        if found.without_direction
        else ""
    )
    link = f' Also in <a href="{_e(_relative(safe_csv, out))}">{_e(safe_csv.name)}</a>.' if safe_csv else ""
    return (
        "<h2>Safe range</h2>"
        f"<p>How far one can steer: the multipliers whose headline metric is no worse than at multiplier 0 by more "
        f"than &delta; = {found.margin:g} (0-1 scale), by a one-sided paired non-inferiority test at &alpha; = {ALPHA:g} with "
        f"Holm's correction over all {tests} tests; a range stops at the first multiplier that fails. "
        f"Slopes: change of the headline per unit |m| away from 0, on each side of 0 (negative: it falls as "
        f"one steers further), 95% interval.{link}</p>"
        + common
        + '<table><tr><th class="name">benchmark</th><th class="name">metric</th><th>worse when</th>'
        f"<th>safe range</th><th>n at 0</th><th>slope, m &lt; 0</th><th>slope, m &gt; 0</th></tr>{''.join(rows)}</table>"
        + missing
    )


def _slope_text(slope: Any) -> str:
    if slope is None or not math.isfinite(slope.estimate):
        return ""
    return f"{slope.estimate:+.3f} [{slope.low:+.3f}, {slope.high:+.3f}]"


def _provenance_section(analysis: Analysis) -> str:
    p = analysis.provenance

    def table(title: str, items: dict[str, str], left: str, right: str) -> str:
        if not items:
            return f"<p><b>{_e(title)}</b>: none recorded.</p>"
        body = "".join(f'<tr><td class="name">{_e(k)}</td><td class="name">{_e(v)}</td></tr>' for k, v in items.items())
        return f'<h3>{_e(title)}</h3><table><tr><th class="name">{_e(left)}</th><th class="name">{_e(right)}</th></tr>{body}</table>'

    endpoints = {m: f"{p.endpoints.get(m, '')}  ({p.models.get(m, '')})" for m in p.models}
    return "\n".join(
        [
            "<h2>Provenance</h2>",
            f"<p>Log root <code>{_e(p.log_root)}</code>; {p.logs} logs; evals ran from {_e(p.first_started or '?')} "
            f"to {_e(p.last_completed or '?')}; report generated {_e(p.generated_at)}. API keys are never recorded.</p>",
            table("Endpoints and models", endpoints, "multiplier", "base URL (model)"),
            table("Steering (from steerbench serve)", p.steering, "multiplier", "vector, layer, model")
            if p.steering
            else "",
            f"<p><b>Graders</b>: {_e(', '.join(p.graders) or 'none (no model-graded tasks, or graded by the steered model)')}</p>",
            table("Tasks", p.tasks, "benchmark", "Inspect task (version)"),
            table("Packages the logs were written with", p.packages, "package", "version"),
            table("Packages this report was made with", p.report_packages, "package", "version"),
        ]
    )
