"""Cell keys: which (benchmark, subset, multiplier) a cell is, and its `name[subset]` label, written here once."""

from __future__ import annotations

from dataclasses import dataclass


def cell_label(benchmark: str, subset: str) -> str:
    """`benchmark`, or `benchmark[subset]` for a benchmark with subsets."""
    return f"{benchmark}[{subset}]" if subset else benchmark


def multiplier_sort_key(label: str) -> float:
    """A multiplier label's numeric value, for ordering and matching ("1" and "1.0" are one multiplier)."""
    try:
        return float(label)
    except ValueError:
        return float("inf")


@dataclass(frozen=True)
class CellKey:
    """One cell of the grid as the readers of logs know it: benchmark, subset, multiplier label, category."""

    benchmark: str
    subset: str
    multiplier: str  # the label, as deployments.jsonl writes it
    category: str = ""

    @property
    def label(self) -> str:
        return cell_label(self.benchmark, self.subset)

    @property
    def where(self) -> str:
        return f"{self.label} at multiplier {self.multiplier}"

    @property
    def ident(self) -> tuple[str, str, float]:
        """What identifies the cell whatever way its multiplier is written."""
        return self.benchmark, self.subset, multiplier_sort_key(self.multiplier)
