"""The latency dashboard page: staff only, every window, numbers and inline SVG, recorder drops shown."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from tests.unit.test_recorder import Sink
from vectors import conf, metrics
from vectors.models import RequestLog
from vectors.recorder import Recorder

DASHBOARD = "/admin/vectors/requestlog/dashboard/"


def some_traffic() -> None:
    now = timezone.now()
    rows = [
        RequestLog(request_id=f"ok{i}", created_at=now - timedelta(seconds=2 + i), endpoint="openai", model="m1",
                   status=200, inputs=2, total_ms=10.0 + i, queue_ms=1.0, inference_ms=8.0, batch_size=4)
        for i in range(20)
    ]  # fmt: skip
    rows += [
        RequestLog(request_id=f"busy{i}", created_at=now - timedelta(seconds=3), endpoint="tei", model="m2",
                   status=429, error_code="queue_full", total_ms=0.5)
        for i in range(5)
    ]  # fmt: skip
    RequestLog.objects.bulk_create(rows)


@pytest.mark.django_db
@pytest.mark.parametrize("window", ["5m", "1h", "24h", "7d"])
def test_dashboard_answers_staff_for_every_window(admin_client, window):
    some_traffic()
    answer = admin_client.get(DASHBOARD, {"window": window})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 4
    assert "25 requests" in page
    assert "<script" not in page.split('<div id="content-main">')[1], "charts are drawn on the server"


@pytest.mark.django_db
def test_dashboard_sends_anonymous_and_non_staff_to_login(client):
    answer = client.get(DASHBOARD)
    assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/?next=")
    client.force_login(User.objects.create_user("plain", password="pw"))
    assert client.get(DASHBOARD).status_code == 302


@pytest.mark.django_db
def test_staff_without_view_permission_on_logs_is_refused(client):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(DASHBOARD).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_requestlog"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(DASHBOARD).status_code == 200


@pytest.mark.django_db
def test_the_admin_index_and_the_changelist_link_to_the_dashboard(admin_client):
    assert DASHBOARD.encode() in admin_client.get("/admin/").content
    assert DASHBOARD.encode() in admin_client.get("/admin/vectors/requestlog/").content


@pytest.mark.django_db
def test_dashboard_shows_rates_percentiles_and_errors(admin_client):
    some_traffic()
    page = admin_client.get(DASHBOARD, {"window": "5m"}).content.decode()
    assert "5.00" in page  # requests per minute: 25 in 5 minutes
    assert "20.00 %" in page  # error rate: 5 of 25
    assert "queue_full" in page and "<td>429</td>" in page
    assert "Every figure uses every row." in page


@pytest.mark.django_db
def test_dashboard_filters_by_endpoint_and_model(admin_client):
    some_traffic()
    page = admin_client.get(DASHBOARD, {"window": "1h", "endpoint": "tei", "model": "m2"}).content.decode()
    assert "5 requests" in page and "100.00 %" in page
    assert '<option value="tei" selected>' in page


@pytest.mark.django_db
def test_an_unknown_window_falls_back_to_the_last_hour(admin_client):
    page = admin_client.get(DASHBOARD, {"window": "forever"}).content.decode()
    assert 'class="current">last hour' in page


@pytest.mark.django_db
def test_dropped_log_rows_show_on_the_dashboard_and_in_metrics(admin_client):
    before = metrics.recorder_totals()["dropped"]
    small = Recorder(replace(conf.log_config(), buffer_rows=3), Sink(failures=10_000))
    from tests.unit.test_recorder import entry

    for i in range(10):
        small.add(entry(i))
    assert small.dropped == {"buffer_full": 7}
    page = admin_client.get(DASHBOARD).content.decode()
    exposed = admin_client.get("/metrics").content.decode()
    small.stop(timeout_s=0.2)
    dropped = metrics.recorder_totals()["dropped"]
    assert dropped - before >= 7
    assert f'<div class="value dash-warn">{round(before + 7):,}</div>' in page
    line = next(x for x in exposed.splitlines() if x.startswith('embed_log_rows_dropped_total{reason="buffer_full"}'))
    assert float(line.split()[-1]) >= 7
    assert "embed_log_buffer_rows" in exposed and "embed_log_flush_failures_total" in exposed
