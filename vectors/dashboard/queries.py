"""The dashboard's figures, aggregated in the database: counts always exact, distributions exact or sampled.

Counts (requests, errors by status, requests per time bucket) come from index-only queries, cheap even
over millions of rows. Distributions (latency percentiles, batch sizes, texts per request) are
grouped in the database over every row of the window up to EXACT_ROWS rows; past that, over an
even sample of about SAMPLE_ROWS rows picked by primary key (ids follow arrival time), so a page
over a busy week costs the same as a page over a quiet hour. The page says which one it shows.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ..models import RequestLog
from .sql import EpochBucket, Floor3, distinct_values, floor3_array

EXACT_ROWS = 50_000
SAMPLE_ROWS = 10_000
MAX_PROBES = 15_000  # at most this many ids looked up: with a narrow filter, fewer rows match
QUANTILES = (0.5, 0.95, 0.99)
LATENCIES = ("total_ms", "queue_ms", "inference_ms")
BATCH_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 63), (64, 127), (128, 255), (256, 10**9))


@dataclass(frozen=True)
class Window:
    """A span of time back from now, cut into buckets for the charts."""

    key: str
    label: str
    span: timedelta
    bucket_s: int


WINDOWS = {
    w.key: w
    for w in (
        Window("5m", "last 5 minutes", timedelta(minutes=5), 10),
        Window("1h", "last hour", timedelta(hours=1), 60),
        Window("24h", "last 24 hours", timedelta(hours=24), 900),
        Window("7d", "last 7 days", timedelta(days=7), 7200),
    )
}
DEFAULT_WINDOW = "1h"


@dataclass(frozen=True)
class Selection:
    """What to show: a window ending now, optionally one endpoint and/or one model."""

    window: Window
    endpoint: str = ""
    model: str = ""
    now: datetime = field(default_factory=timezone.now)

    @property
    def start(self) -> datetime:
        return self.now - self.window.span


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


def filtered_rows(selection: Selection, using: str = "default") -> QuerySet:
    """Return the RequestLog rows of the selection's endpoint and model, at any time (no ordering)."""
    rows = RequestLog.objects.using(using).order_by()
    if selection.endpoint:
        rows = rows.filter(endpoint=selection.endpoint)
    if selection.model:
        rows = rows.filter(model=selection.model)
    return rows


def window_rows(selection: Selection, using: str = "default") -> QuerySet:
    """Return the RequestLog rows of the selection (no ordering)."""
    return filtered_rows(selection, using).filter(created_at__gt=selection.start, created_at__lte=selection.now)


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


def latency_histogram(rows: QuerySet, column: str) -> list[tuple[float, int]]:
    """Count rows per latency bucket (3 significant digits) in the database."""
    grouped = (
        rows.filter(**{f"{column}__isnull": False})
        .annotate(bucket=Floor3(column))
        .values("bucket")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return [(float(g["bucket"]), g["n"]) for g in grouped]


def latency_percentiles(rows: QuerySet) -> dict[str, dict[float, float | None]]:
    """p50/p95/p99 of total, queue and inference ms over `rows`, computed from database histograms."""
    return {column: quantiles(latency_histogram(rows, column)) for column in LATENCIES}


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


def error_statuses(using: str = "default") -> list[int]:
    """Return every status >= 400 present in the table (a few probes of the status index)."""
    return [s for s in distinct_values(RequestLog, "status", using=using) if s >= 400]


def error_counts(rows: QuerySet, statuses: list[int]) -> list[StatusCount]:
    """Count answers with an error status, by status and error code.

    `status IN (...)` rather than `status >= 400`: equality on the index's first column lets SQLite
    seek (status, created_at) for each status, where a range would have it walk the time index.
    """
    grouped = rows.filter(status__in=statuses).values("status", "error_code").annotate(n=Count("pk"))
    return [StatusCount(g["status"], g["error_code"], g["n"]) for g in grouped.order_by("status", "error_code")]


def bucket_edges(selection: Selection) -> list[tuple[datetime, datetime]]:
    """Cut the window into buckets aligned to whole multiples of the bucket size (the ends may be partial)."""
    size = selection.window.bucket_s
    first = math.floor(selection.start.timestamp() / size) * size
    last = selection.now.timestamp()
    edges = []
    at = first
    while at < last:
        lo = max(at, selection.start.timestamp())
        hi = min(at + size, last)
        edges.append((datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)))
        at += size
    return edges


def in_bucket(selection: Selection, lo: datetime, hi: datetime) -> Q:
    """Rows from `lo` (inclusive, like EpochBucket's rounding down) to `hi`, within the window's (start, now]."""
    lower = Q(created_at__gt=lo) if lo == selection.start else Q(created_at__gte=lo)
    upper = Q(created_at__lte=hi) if hi == selection.now else Q(created_at__lt=hi)
    return lower & upper


def figures(selection: Selection, using: str = "default") -> Figures:
    """Compute the dashboard for `selection`."""
    rows = window_rows(selection, using)
    statuses = error_statuses(using)
    errors = error_counts(rows, statuses)
    # A count that stops after EXACT_ROWS + 1 rows decides the path; past it, the per-bucket counts
    # of the sampled path add up to the exact total without a second pass over the window.
    bounded = rows[: EXACT_ROWS + 1].count()
    if bounded <= EXACT_ROWS:
        return exact_figures(selection, rows, bounded, errors)
    return sampled_figures(selection, using, errors, statuses)


def exact_figures(selection: Selection, rows: QuerySet, requests: int, errors: list[StatusCount]) -> Figures:
    size = selection.window.bucket_s
    grouped = {
        g["bucket"]: g
        for g in rows.annotate(bucket=EpochBucket("created_at", size))
        .values("bucket")
        .annotate(n=Count("pk"), texts=Sum("inputs"), errors=Count("pk", filter=Q(status__gte=400)))
        .order_by()
    }
    series = []
    for lo, hi in bucket_edges(selection):
        g = grouped.get(int(lo.timestamp()) // size, {})
        series.append(
            Bucket(lo, (hi - lo).total_seconds(), g.get("n", 0), float(g.get("texts") or 0), g.get("errors", 0))
        )
    sizes = rows.filter(batch_size__isnull=False).values("batch_size").annotate(n=Count("pk")).order_by()
    return Figures(
        selection=selection,
        requests=requests,
        texts=sum(b.texts for b in series),
        series=series,
        errors=errors,
        percentiles=latency_percentiles(rows),
        batch_sizes=bin_batch_sizes({g["batch_size"]: g["n"] for g in sizes}),
    )


def sample(selection: Selection, using: str, expected: int) -> list[tuple]:
    """Return about SAMPLE_ROWS rows of the window spread evenly over it, picked by primary key.

    Each row is (time bucket, inputs, total_ms, queue_ms, inference_ms, batch_size). Endpoint and
    model and time are checked here rather than in SQL, so the database looks rows up by id, nothing else.
    """
    rows = window_rows(selection, using)
    first = rows.order_by("created_at").values_list("pk", flat=True)[:1]
    last = rows.order_by("-created_at").values_list("pk", flat=True)[:1]
    if not first or not last:
        return []
    low, high = min(first[0], last[0]), max(first[0], last[0])
    span = high - low + 1
    # Filters (endpoint, model) leave only some ids in the range matching: ask for more of them.
    probes = min(MAX_PROBES, max(SAMPLE_ROWS, math.ceil(SAMPLE_ROWS * span / max(expected, 1))))
    step = max(1, math.ceil(span / probes))
    # Only the ids in SQL (generated there, every `step`-th): given the time bounds too, SQLite would walk
    # the time index instead of looking ids up.
    probe = RawSQL(
        "WITH RECURSIVE probe(i) AS (SELECT %s UNION ALL SELECT i + %s FROM probe WHERE i + %s <= %s)"
        " SELECT i FROM probe",
        (low, step, step, high),
    )
    fetched = (
        RequestLog.objects.using(using)
        .filter(pk__in=probe)
        .order_by()
        .annotate(epoch_s=EpochBucket("created_at", 1))
        .values_list("epoch_s", "endpoint", "model", "inputs", "total_ms", "queue_ms", "inference_ms", "batch_size")
    )
    start_s, end_s, size = selection.start.timestamp(), selection.now.timestamp(), selection.window.bucket_s
    return [
        (epoch_s // size, *rest)
        for epoch_s, endpoint, model, *rest in fetched
        if start_s < epoch_s + 1
        and epoch_s <= end_s
        and (not selection.endpoint or endpoint == selection.endpoint)
        and (not selection.model or model == selection.model)
    ]


def sample_histogram(values: list[float | None]) -> list[tuple[float, int]]:
    """Count sampled values per latency bucket (numpy, the same arithmetic as Floor3 in SQL)."""
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    buckets, counts = np.unique(floor3_array(present), return_counts=True)
    return list(zip(buckets.tolist(), counts.tolist(), strict=True))


def sampled_figures(selection: Selection, using: str, errors: list[StatusCount], statuses: list[int]) -> Figures:
    size = selection.window.bucket_s
    # One index range count per bucket, on the filters alone: stacking the window's bounds on the
    # bucket's would make SQLite seek by the window's and walk up to the bucket.
    timeless = filtered_rows(selection, using)
    edges = bucket_edges(selection)
    counts = [timeless.filter(in_bucket(selection, lo, hi)).count() for lo, hi in edges]
    requests = sum(counts)
    picked = sample(selection, using, requests)
    error_buckets = dict(
        window_rows(selection, using)
        .filter(status__in=statuses)
        .annotate(bucket=EpochBucket("created_at", size))
        .values_list("bucket")
        .annotate(n=Count("pk"))
        .order_by()
    )
    # Texts per request, per bucket, from the sample; the request counts themselves are exact.
    inputs_by_bucket: dict[int, list[int]] = {}
    for bucket, inputs, *_ in picked:
        inputs_by_bucket.setdefault(bucket, []).append(inputs)
    overall = sum(r[1] for r in picked) / len(picked) if picked else 1.0
    series = []
    for (lo, hi), count in zip(edges, counts, strict=True):
        key = int(lo.timestamp()) // size
        seen = inputs_by_bucket.get(key)
        per_request = sum(seen) / len(seen) if seen else overall
        series.append(Bucket(lo, (hi - lo).total_seconds(), count, count * per_request, error_buckets.get(key, 0)))
    columns = list(zip(*picked, strict=True)) if picked else [[]] * 6
    batch_counts = Counter(size for size in columns[5] if size is not None)
    return Figures(
        selection=selection,
        requests=requests,
        texts=sum(b.texts for b in series),
        series=series,
        errors=errors,
        percentiles={
            column: quantiles(sample_histogram(list(values)))
            for column, values in zip(LATENCIES, columns[2:5], strict=True)
        },
        batch_sizes=bin_batch_sizes(batch_counts),
        sampled_rows=len(picked),
    )
