"""The dashboard past EXACT_ROWS rows: counts still exact per bucket, distributions from an even sample by id."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from django.db.models import Count
from django.db.models.expressions import RawSQL

from ..models import RequestLog
from .figures import LATENCIES, Bucket, Figures, StatusCount, bin_batch_sizes, quantiles
from .selection import Selection, bucket_edges, filtered_rows, in_bucket, window_rows
from .sql import EpochBucket, floor3_array

SAMPLE_ROWS = 10_000
MAX_PROBES = 15_000  # at most this many ids looked up: with a narrow filter, fewer rows match


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
