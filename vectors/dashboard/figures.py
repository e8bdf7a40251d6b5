"""The dashboard's figures as plain data, and the arithmetic on them that needs no database."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from .selection import Selection

QUANTILES = (0.5, 0.95, 0.99)
LATENCIES = ("total_ms", "queue_ms", "inference_ms")
BATCH_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 63), (64, 127), (128, 255), (256, 10**9))


@dataclass(frozen=True)
class Bucket:
    """One time bucket of the traffic chart."""

    start: datetime
    seconds: float
    requests: int
    texts: float
    errors: int

    @property
    def requests_per_min(self) -> float:
        return self.requests * 60 / self.seconds

    @property
    def texts_per_min(self) -> float:
        return self.texts * 60 / self.seconds

    @property
    def errors_per_min(self) -> float:
        return self.errors * 60 / self.seconds


@dataclass(frozen=True)
class StatusCount:
    status: int
    error_code: str
    count: int


@dataclass
class Figures:
    """Everything the dashboard shows for one selection."""

    selection: Selection
    requests: int
    texts: float
    series: list[Bucket]
    errors: list[StatusCount]
    percentiles: dict[str, dict[float, float | None]]
    batch_sizes: list[tuple[str, int]]
    sampled_rows: int | None = None  # None: every row of the window was used

    @property
    def error_count(self) -> int:
        return sum(e.count for e in self.errors)

    @property
    def minutes(self) -> float:
        return self.selection.window.span.total_seconds() / 60


def quantiles(histogram: list[tuple[float, int]], wanted: tuple[float, ...] = QUANTILES) -> dict[float, float | None]:
    """Return nearest-rank quantiles from (value, count) pairs; None for each when there are none."""
    total = sum(count for _, count in histogram)
    result: dict[float, float | None] = {q: None for q in wanted}
    if not total:
        return result
    ordered = sorted(histogram)
    for q in wanted:
        rank = max(1, math.ceil(q * total - 1e-9))
        seen = 0
        for value, count in ordered:
            seen += count
            if seen >= rank:
                result[q] = value
                break
    return result


def bin_batch_sizes(counts: dict[int, int]) -> list[tuple[str, int]]:
    """Fold counts per batch size into power-of-two bins: 1, 2-3, 4-7, ..."""
    bins = []
    for low, high in BATCH_BINS:
        total = sum(n for size, n in counts.items() if low <= size <= high)
        if total or high < 256:
            bins.append((str(low) if low == high else (f"{low}+" if high >= 10**9 else f"{low}-{high}"), total))
    while len(bins) > 1 and bins[-1][1] == 0:
        bins.pop()
    return bins
