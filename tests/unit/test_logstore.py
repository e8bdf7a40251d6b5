"""The database sink: bulk inserts, repeated ids stored once, invalid rows refused alone, trimming, on both DBs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections

from vectors import conf, retention
from vectors.logstore import DatabaseSink
from vectors.models import RequestLog
from vectors.recorder import LogEntry, Recorder


def entry(i: int, **fields) -> LogEntry:
    return LogEntry(f"s{i}", datetime.now(UTC), "openai", "m", "10.0.0.1", 200, total_ms=1.0 + i, **fields)


def test_a_batch_is_inserted_with_every_field(any_db):
    sink = DatabaseSink(any_db)
    assert sink.write([entry(i, queue_ms=0.5, inference_ms=2.0, batch_size=8, tokens=7) for i in range(300)]) == 0
    rows = RequestLog.objects.using(any_db)
    assert rows.count() == 300
    row = rows.get(request_id="s7")
    assert (row.total_ms, row.queue_ms, row.inference_ms, row.batch_size, row.tokens) == (8.0, 0.5, 2.0, 8, 7)
    sink.close()


def test_a_repeated_request_id_is_stored_once(any_db):
    sink = DatabaseSink(any_db)
    sink.write([entry(1), entry(2)])
    assert sink.write([entry(2), entry(3)]) == 0
    assert sorted(RequestLog.objects.using(any_db).values_list("request_id", flat=True)) == ["s1", "s2", "s3"]
    sink.close()


def test_an_invalid_row_is_refused_alone_on_postgresql(pg):
    sink = DatabaseSink(pg)
    bad = replace(entry(2), status=-1)  # violates the positive status check
    assert sink.write([entry(1), bad, entry(3)]) == 1
    assert sorted(RequestLog.objects.using(pg).values_list("request_id", flat=True)) == ["s1", "s3"]
    sink.close()


def test_the_sink_trims_the_table_to_max_rows_at_most_once_a_minute(any_db):
    sink = DatabaseSink(any_db, max_rows=50)
    sink.write([entry(i) for i in range(80)])
    assert RequestLog.objects.using(any_db).count() == 50
    assert min(RequestLog.objects.using(any_db).values_list("total_ms", flat=True)) == 31.0, "the oldest went"
    sink.write([entry(i) for i in range(80, 100)])
    assert RequestLog.objects.using(any_db).count() == 70, "not again within the minute"
    sink._trimmed_at -= sink.trim_every_s
    sink.write([entry(100)])
    assert RequestLog.objects.using(any_db).count() == 50
    sink.close()


def test_the_recorder_writes_through_a_lost_connection_on_postgresql(pg):
    recorder = Recorder(replace(conf.log_config(), flush_ms=10, database=pg), DatabaseSink(pg))
    recorder.add(entry(1))
    assert recorder.flush(5)
    with connections[pg].cursor() as cursor:  # kill every other session on this database: the writer's
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    for i in range(2, 6):
        recorder.add(entry(i))
    assert recorder.flush(10)
    recorder.stop()
    assert RequestLog.objects.using(pg).count() == 5
    assert recorder.dropped == {}


@pytest.mark.django_db
def test_trim_and_prune_delete_in_chunks(monkeypatch):
    monkeypatch.setattr(retention, "CHUNK_ROWS", 7)
    now = datetime.now(UTC)
    RequestLog.objects.bulk_create(
        RequestLog(request_id=f"p{i}", created_at=now - timedelta(days=i / 10 + 0.05), endpoint="tei", status=200,
                   total_ms=1)
        for i in range(100)
    )  # fmt: skip
    assert retention.count_older_than(timedelta(days=5)) == 50
    assert retention.prune_older_than(timedelta(days=5)) == 50
    assert RequestLog.objects.count() == 50
    assert retention.trim_to(20) == 30 and RequestLog.objects.count() == 20
    assert retention.trim_to(20) == 0
