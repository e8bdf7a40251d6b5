"""The dashboard's database aggregates - percentiles, buckets, counts, sampling - on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from vectors.dashboard import queries, sampled
from vectors.dashboard.figures import QUANTILES, bin_batch_sizes, quantiles
from vectors.dashboard.selection import WINDOWS, Selection, bucket_edges, window_rows
from vectors.dashboard.sql import Floor3, distinct_values, floor3
from vectors.models import RequestLog

NOW = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)


def rows_at(alias: str, specs: list[dict]) -> None:
    """Insert rows in time order (ids follow time, as the recorder writes them)."""
    made = []
    for i, spec in enumerate(sorted(specs, key=lambda s: -s.get("ago_s", 0))):
        fields = {
            "request_id": f"q{i}",
            "created_at": NOW - timedelta(seconds=spec.get("ago_s", 1)),
            "endpoint": "openai",
            "model": "m1",
            "status": 200,
            "inputs": 1,
            "total_ms": 10.0,
            "queue_ms": 1.0,
            "inference_ms": 5.0,
            "batch_size": 1,
        }
        fields.update({k: v for k, v in spec.items() if k != "ago_s"})
        made.append(RequestLog(**fields))
    RequestLog.objects.using(alias).bulk_create(made, batch_size=500)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def selection(window: str = "1h", **filters: str) -> Selection:
    return Selection(WINDOWS[window], now=NOW, **filters)


def test_quantiles_take_the_nearest_rank_of_a_histogram():
    histogram = [(30.0, 1), (10.0, 5), (20.0, 4)]
    assert quantiles(histogram, (0.5, 0.6, 0.61, 1.0)) == {0.5: 10.0, 0.6: 20.0, 0.61: 20.0, 1.0: 30.0}
    assert quantiles([]) == {0.5: None, 0.95: None, 0.99: None}


def test_bucket_edges_cover_the_window_without_gaps():
    edges = bucket_edges(selection("1h"))
    assert edges[0][0] == NOW - timedelta(hours=1) and edges[-1][1] == NOW
    assert all(a[1] == b[0] for a, b in zip(edges, edges[1:], strict=False))
    assert len(edges) == 61  # 60 whole minutes, the ends partial (the window starts at :30)


def test_batch_sizes_fold_into_power_of_two_bins():
    assert bin_batch_sizes({1: 5, 3: 2, 4: 1, 128: 7}) == [
        ("1", 5),
        ("2-3", 2),
        ("4-7", 1),
        ("8-15", 0),
        ("16-31", 0),
        ("32-63", 0),
        ("64-127", 0),
        ("128-255", 7),
    ]


def test_floor3_in_the_database_is_floor3_in_python(any_db):
    values = [0.004, 0.29, 0.57, 1.234, 9.999, 12.345, 99.99, 123.4, 999.9, 1234.5, 12345.0, 123456.0, 1234567.0]
    rows_at(any_db, [{"total_ms": v, "request_id": f"f{i}"} for i, v in enumerate(values)])
    got = dict(RequestLog.objects.using(any_db).annotate(b=Floor3("total_ms")).values_list("total_ms", "b").order_by())
    assert {v: got[v] for v in values} == {v: floor3(v) for v in values}
    assert floor3(12.345) == 12.3 and floor3(1234.5) == 1230 and floor3(0.29) == 0.29


def test_percentiles_in_the_database_match_numpy(any_db):
    rng = np.random.default_rng(7)
    n = 2000
    total = rng.lognormal(np.log(30), 0.8, n)
    queue = rng.lognormal(np.log(3), 1.0, n)
    rows_at(
        any_db,
        [
            {"ago_s": 1 + i, "total_ms": t, "queue_ms": q, "inference_ms": t - q if i % 5 else None}
            for i, (t, q) in enumerate(zip(total.tolist(), queue.tolist(), strict=True))
        ],
    )
    got = queries.latency_percentiles(window_rows(selection(), any_db))
    for column, values in (("total_ms", total), ("queue_ms", queue)):
        for q in QUANTILES:
            want = nearest_rank([floor3(v) for v in values], q)
            assert got[column][q] == want, (column, q)
            assert got[column][q] == pytest.approx(np.quantile(values, q, method="inverted_cdf"), rel=0.01)
    inference = [float(t - q) for i, (t, q) in enumerate(zip(total, queue, strict=True)) if i % 5]
    assert got["inference_ms"][0.99] == nearest_rank([floor3(v) for v in inference], 0.99), "NULLs are left out"


def test_figures_count_requests_texts_errors_and_batches_per_bucket(any_db):
    specs = [{"ago_s": 5, "inputs": 3, "batch_size": 8} for _ in range(4)]
    specs += [{"ago_s": 65, "status": 429, "error_code": "queue_full", "queue_ms": None, "batch_size": None}]
    specs += [{"ago_s": 70, "status": 400, "error_code": "invalid_request", "batch_size": None} for _ in range(2)]
    specs += [{"ago_s": 4000}]  # outside the hour
    rows_at(any_db, specs)
    figures = queries.figures(selection("1h"), any_db)
    assert figures.sampled_rows is None
    assert figures.requests == 7 and figures.texts == 4 * 3 + 3
    assert [(e.status, e.error_code, e.count) for e in figures.errors] == [
        (400, "invalid_request", 2),
        (429, "queue_full", 1),
    ]
    last, before = figures.series[-1], figures.series[-2]
    assert (last.requests, last.texts, last.errors) == (4, 12, 0)  # 12:00:00 - 12:00:30
    assert (before.requests, before.errors) == (3, 3)  # 11:59:00 - 11:59:59
    assert sum(b.requests for b in figures.series) == 7
    assert last.requests_per_min == pytest.approx(4 * 60 / 30)
    assert dict(figures.batch_sizes)["8-15"] == 4


def test_filters_narrow_the_figures_to_one_endpoint_and_model(any_db):
    rows_at(any_db, [{"endpoint": "tei", "model": "m2", "total_ms": 100.0}] * 3 + [{"endpoint": "openai"}] * 5)
    only = queries.figures(selection("5m", endpoint="tei", model="m2"), any_db)
    assert only.requests == 3 and only.percentiles["total_ms"][0.5] == 100.0
    assert queries.figures(selection("5m", endpoint="tei", model="m1"), any_db).requests == 0


def test_an_empty_window_has_zero_counts_and_no_percentiles(any_db):
    figures = queries.figures(selection("5m"), any_db)
    assert figures.requests == 0 and figures.errors == []
    assert figures.percentiles["total_ms"] == {0.5: None, 0.95: None, 0.99: None}
    assert all(b.requests == 0 for b in figures.series)


def test_large_windows_sample_distributions_but_count_exactly(any_db, monkeypatch):
    rng = np.random.default_rng(3)
    n = 3000
    total = rng.lognormal(np.log(40), 0.6, n)
    specs = [
        {"ago_s": 1 + i, "total_ms": float(t), "inputs": 1 + i % 3, "status": 503 if i % 50 == 0 else 200}
        for i, t in enumerate(total)
    ]
    rows_at(any_db, specs)
    exact = queries.figures(selection("1h"), any_db)
    monkeypatch.setattr(queries, "EXACT_ROWS", 100)
    monkeypatch.setattr(sampled, "SAMPLE_ROWS", 600)
    estimated = queries.figures(selection("1h"), any_db)
    assert exact.sampled_rows is None and 500 <= estimated.sampled_rows <= 700
    assert estimated.requests == exact.requests == n
    assert [b.requests for b in estimated.series] == [b.requests for b in exact.series]
    assert [b.errors for b in estimated.series] == [b.errors for b in exact.series]
    assert estimated.errors == exact.errors
    for q in QUANTILES:
        assert estimated.percentiles["total_ms"][q] == pytest.approx(exact.percentiles["total_ms"][q], rel=0.2)
    assert estimated.texts == pytest.approx(exact.texts, rel=0.1)


def test_sampling_with_a_filter_still_finds_matching_rows(any_db, monkeypatch):
    rows_at(any_db, [{"ago_s": 1 + i, "endpoint": "tei" if i % 10 == 0 else "openai"} for i in range(2000)])
    monkeypatch.setattr(queries, "EXACT_ROWS", 50)
    monkeypatch.setattr(sampled, "SAMPLE_ROWS", 100)
    figures = queries.figures(selection("1h", endpoint="tei"), any_db)
    assert figures.requests == 200
    assert figures.sampled_rows >= 90, "a narrow filter asks for more ids"


def test_distinct_values_skip_through_the_index(any_db):
    rows_at(any_db, [{"endpoint": e, "status": s} for e in ("tei", "openai", "similarity") for s in (200, 429)])
    assert distinct_values(RequestLog, "endpoint", using=any_db) == ["openai", "similarity", "tei"]
    assert distinct_values(RequestLog, "status", using=any_db) == [200, 429]
    assert distinct_values(RequestLog, "endpoint", using=any_db, limit=2) == ["openai", "similarity"]
