"""The RequestLog and BenchmarkRun admin: read-only, staff only, and no query that reads the whole table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from vectors.changelist import CappedCountPaginator
from vectors.models import BenchmarkRun, RequestLog

CHANGELIST = "/admin/vectors/requestlog/"


def log_rows(count: int, **fields) -> list[RequestLog]:
    now = timezone.now()
    defaults = {"endpoint": "openai", "model": "m1", "status": 200, "total_ms": 12.5, "caller": "10.0.0.1"}
    rows = [
        RequestLog(request_id=f"{fields.get('endpoint', 'openai')}-{fields.get('status', 200)}-{i}",
                   created_at=now - timedelta(seconds=i), **{**defaults, **fields})
        for i in range(count)
    ]  # fmt: skip
    return RequestLog.objects.bulk_create(rows)


@pytest.mark.django_db
def test_changelist_answers_staff_and_sends_anonymous_to_login(client, admin_client):
    log_rows(3)
    assert admin_client.get(CHANGELIST).status_code == 200
    answer = client.get(CHANGELIST)
    assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_non_staff_users_are_sent_to_login(client):
    user = User.objects.create_user("plain", password="pw")
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 302


@pytest.mark.django_db
def test_changelist_never_counts_the_whole_table(admin_client):
    log_rows(30)
    with CaptureQueriesContext(connection) as queries:
        answer = admin_client.get(CHANGELIST)
    assert answer.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "vectors_requestlog" in q["sql"]]
    assert counts and all("LIMIT" in sql for sql in counts), counts
    assert b"30 request logs" in answer.content


@pytest.mark.django_db
def test_past_the_count_cap_the_changelist_says_more_than(admin_client, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 20)
    log_rows(25)
    answer = admin_client.get(CHANGELIST)
    assert b"more than 20 request logs" in answer.content


@pytest.mark.django_db
def test_search_matches_the_request_id_exactly(admin_client):
    log_rows(5)
    found = admin_client.get(CHANGELIST, {"q": "openai-200-3"})
    assert b"openai-200-3" in found.content and b"openai-200-4" not in found.content
    assert b"0 request logs" in admin_client.get(CHANGELIST, {"q": "openai-200"}).content


@pytest.mark.django_db
def test_filters_narrow_by_endpoint_model_status_and_time(admin_client):
    log_rows(2, endpoint="tei", model="m2")
    log_rows(3, status=429, error_code="queue_full")
    page = admin_client.get(CHANGELIST).content.decode()
    for choice in ("?endpoint=tei", "?model=m2", "?status=429", "?status=errors", "?recent=5m"):
        assert choice in page, choice
    assert b"2 request logs" in admin_client.get(CHANGELIST, {"endpoint": "tei"}).content
    assert b"2 request logs" in admin_client.get(CHANGELIST, {"model": "m2"}).content
    assert b"3 request logs" in admin_client.get(CHANGELIST, {"status": "errors"}).content
    assert b"3 request logs" in admin_client.get(CHANGELIST, {"status": "429"}).content
    assert b"2 request logs" in admin_client.get(CHANGELIST, {"status": "ok"}).content
    assert b"5 request logs" in admin_client.get(CHANGELIST, {"recent": "1h"}).content


@pytest.mark.django_db
def test_the_date_drill_down_offers_only_periods_with_rows(admin_client):
    for year, month, day in ((2025, 12, 30), (2026, 3, 4), (2026, 3, 9)):
        RequestLog.objects.create(
            request_id=f"d{year}{month}{day}",
            created_at=datetime(year, month, day, 12, tzinfo=UTC),
            endpoint="tei",
            status=200,
            total_ms=1,
        )
    years = admin_client.get(CHANGELIST).content.decode()
    assert "created_at__year=2025" in years and "created_at__year=2026" in years
    months = admin_client.get(CHANGELIST, {"created_at__year": 2026}).content.decode()
    assert "created_at__month=3" in months and "created_at__month=4" not in months
    days = admin_client.get(CHANGELIST, {"created_at__year": 2026, "created_at__month": 3}).content.decode()
    assert "created_at__day=4" in days and "created_at__day=9" in days and "created_at__day=5" not in days
    one_day = admin_client.get(CHANGELIST, {"created_at__year": 2026, "created_at__month": 3, "created_at__day": 9})
    assert b"1 request log" in one_day.content


@pytest.mark.django_db
def test_rows_cannot_be_added_changed_or_deleted(admin_client):
    (row,) = log_rows(1)
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    detail = admin_client.get(f"{CHANGELIST}{row.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert admin_client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert RequestLog.objects.count() == 1


@pytest.mark.django_db
def test_only_the_indexed_time_column_sorts(admin_client):
    log_rows(3)
    page = admin_client.get(CHANGELIST).content.decode()
    assert 'class="sortable column-created_at' in page
    assert "sortable column-total_ms" not in page


@pytest.mark.django_db
def test_benchmark_runs_are_listed_read_only(admin_client):
    BenchmarkRun.objects.create(
        label="nightly", endpoint="openai", mode="closed", concurrency=64, duration_s=30, requests_per_s=300,
        texts_per_s=300, p50_ms=20, p90_ms=30, p99_ms=50, p999_ms=80, max_ms=90,
    )  # fmt: skip
    page = admin_client.get("/admin/vectors/benchmarkrun/")
    assert page.status_code == 200 and b"nightly" in page.content
    assert admin_client.get("/admin/vectors/benchmarkrun/add/").status_code == 403
