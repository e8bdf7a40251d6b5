"""manage.py prunelogs: delete rows past an age and past a row count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from vectors.models import RequestLog


@pytest.fixture
def week_of_rows(db):
    now = datetime.now(UTC)
    RequestLog.objects.bulk_create(
        # Oldest first, as the recorder writes them; half past each hour, so no row sits on a boundary.
        RequestLog(
            request_id=f"w{i}", created_at=now - timedelta(hours=i, minutes=30), endpoint="tei", status=200, total_ms=1
        )
        for i in reversed(range(10 * 24))
    )


def run(*args: str) -> str:
    out = StringIO()
    call_command("prunelogs", *args, stdout=out)
    return out.getvalue()


def test_older_than_deletes_rows_past_the_age(week_of_rows):
    assert run("--older-than", "7d") == "deleted 72 rows older than 7d\n"
    assert RequestLog.objects.count() == 7 * 24
    assert not RequestLog.objects.filter(created_at__lt=datetime.now(UTC) - timedelta(days=7)).exists()


def test_dry_run_only_counts(week_of_rows):
    assert run("--older-than", "1d", "--dry-run") == "would delete 216 rows older than 1d\n"
    assert RequestLog.objects.count() == 240


def test_dry_run_counts_rows_beyond_max_rows_too(week_of_rows):
    out = run("--older-than", "9d", "--max-rows", "200", "--dry-run")
    assert out == "would delete 24 rows older than 9d\nwould delete 40 rows beyond the newest 200\n"
    assert RequestLog.objects.count() == 240


def test_max_rows_keeps_the_newest(week_of_rows):
    assert "deleted 140 rows beyond the newest 100" in run("--max-rows", "100")
    assert RequestLog.objects.count() == 100
    assert RequestLog.objects.filter(request_id="w0").exists()


def test_max_rows_defaults_to_the_setting(week_of_rows):
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "LOG_MAX_ROWS": 24}):
        assert "deleted 216 rows beyond the newest 24" in run()
    assert RequestLog.objects.count() == 24


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say what to delete"),
        (("--older-than", "soon"), "not an age"),
        (("--max-rows", "-1"), ">= 0"),
        (("--older-than", "1000000d"), "longer ago than the 365000d an age may be"),  # before year 1
        (("--older-than", "99999999999d"), "longer ago than the 365000d an age may be"),  # past timedelta's range
    ],
)
def test_bad_arguments_fail_with_a_clear_error(db, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
