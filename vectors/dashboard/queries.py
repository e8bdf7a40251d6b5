"""The dashboard's figures, aggregated in the database: counts always exact, distributions exact or sampled.

Counts (requests, errors by status, requests per time bucket) come from index-only queries, cheap even
over millions of rows. Distributions (latency percentiles, batch sizes, texts per request) are
grouped in the database over every row of the window up to EXACT_ROWS rows; past that, over an
even sample of about SAMPLE_ROWS rows picked by primary key (ids follow arrival time), so a page
over a busy week costs the same as a page over a quiet hour. The page says which one it shows.
"""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet, Sum

from ..models import RequestLog
from . import sampled
from .figures import LATENCIES, Bucket, Figures, StatusCount, bin_batch_sizes, quantiles
from .selection import Selection, bucket_edges, window_rows
from .sql import EpochBucket, Floor3, distinct_values

EXACT_ROWS = 50_000  # up to this many rows in the window, distributions use every row


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
    return sampled.sampled_figures(selection, using, errors, statuses)


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
