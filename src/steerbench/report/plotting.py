"""The one plotting style of steerbench: every figure takes its colours, markers and sizes from here.

Multipliers: blue for negative, grey for 0, red for positive, darker the further from 0.
In greyscale blue and red of the same strength look alike, so the sign is also carried by
the marker (negative: down triangle, 0: circle, positive: up triangle) and by bar hatching
(negative: ////, 0: none, positive: ....), and every figure labels multipliers with their values.

Figures are built on `matplotlib.figure.Figure` (never pyplot's global state), so they render
with the Agg backend in a script and inline in a notebook.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ZERO_GREY = "#808080"
MISSING_GREY = "#d9d9d9"
FLAG_COLOR = "#000000"
CHANGE_COLORMAP = "PuOr_r"  # heatmap of changes: not the multiplier palette, so they cannot be confused
DPI = 150
FORMATS = ("png", "pdf")

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "errorbar.capsize": 2.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 6,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # editable text in the PDF
}


@dataclass(frozen=True)
class MultiplierStyle:
    color: tuple[float, float, float, float]
    marker: str
    hatch: str
    edge: str

    @property
    def hatch_color(self) -> str:
        """White hatching on dark fills, black on light ones, so the hatch shows on every bar."""
        red, green, blue, _ = self.color
        return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"


def multiplier_style(value: float, largest: float) -> MultiplierStyle:
    """Style of one multiplier; `largest` is the largest |multiplier| in the figure."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    if value == 0 or largest == 0:
        return MultiplierStyle(to_rgba(ZERO_GREY), "o", "", "#404040")
    strength = 0.4 + 0.55 * min(abs(value) / largest, 1.0)  # never as pale as white
    if value < 0:
        return MultiplierStyle(colormaps["Blues"](strength), "v", "////", "#08306b")
    return MultiplierStyle(colormaps["Reds"](strength), "^", "....", "#67000d")


def multiplier_styles(values: Sequence[float]) -> dict[float, MultiplierStyle]:
    largest = max((abs(v) for v in values), default=0.0)
    return {v: multiplier_style(v, largest) for v in values}


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Draw inside this context so that every figure shares STYLE."""
    import matplotlib

    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]  # its stubs want each key as a Literal
        yield


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def grid_shape(panels: int, columns: int = 3) -> tuple[int, int]:
    columns = max(1, min(columns, panels))
    return (panels + columns - 1) // columns, columns


def save(figure: Any, folder: Path, name: str) -> list[Path]:
    """Write `name`.png and `name`.pdf into folder; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with styled():
        for fmt in FORMATS:
            path = folder / f"{name}.{fmt}"
            figure.savefig(path, dpi=DPI, format=fmt, metadata=_metadata(fmt))
            paths.append(path)
    return paths


def _metadata(fmt: str) -> dict[str, Any]:
    # no timestamps or software versions in the files, so re-running gives the same bytes
    if fmt == "pdf":
        return {"CreationDate": None, "Producer": "steerbench", "Creator": "steerbench"}
    if fmt == "png":
        return {"Software": "steerbench"}
    return {}


def note(axes: Any, text: str) -> None:
    """A centred message in an empty panel (e.g. no logs of this kind)."""
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="#404040", wrap=True)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.grid(False)
