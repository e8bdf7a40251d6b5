"""The database sink and its table, on both DBs: bulk inserts, a row per request even when request ids repeat,
a batch written again stored once, invalid rows refused alone, trimming, the migration that allowed repeats."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dj_database_url
import pytest
from django.db import IntegrityError, OperationalError, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from tests.conftest import POSTGRES_SERVER, postgres_database
from vectors import conf, retention
from vectors.logstore import FIELDS, DatabaseSink
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


def test_each_field_reads_back_through_the_orm_as_it_was_logged(any_db):
    """The sink writes its own INSERT: every value, the time to the microsecond and the empty ones included,
    must come back through the ORM as bulk_create would have stored it, and the time filters must find it."""
    logged = LogEntry(
        "r-1", datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC), "tei", "minilm", "key:ops", 429,
        error_code="queue_full", inputs=3, tokens=0, total_ms=0.25, text_sample="héllo ✓",
    )  # fmt: skip
    sink = DatabaseSink(any_db)
    assert sink.write([logged]) == 0
    sink.close()
    rows = RequestLog.objects.using(any_db)
    row = rows.get()
    assert {name: getattr(row, name) for name in FIELDS} == {name: getattr(logged, name) for name in FIELDS}
    assert rows.filter(created_at__gte=logged.created_at, created_at__lt=logged.created_at + timedelta(microseconds=1))
    assert not rows.filter(created_at__gt=logged.created_at)
    orm = RequestLog(**{name: getattr(logged, name) for name in FIELDS} | {"entry_id": "orm", "request_id": "r-2"})
    rows.bulk_create([orm])
    assert rows.filter(created_at=logged.created_at).count() == 2, "stored in the form the ORM stores it in"


def request_ids(using: str) -> list[str]:
    return sorted(RequestLog.objects.using(using).values_list("request_id", flat=True))


def test_entries_that_share_a_request_id_are_all_stored(any_db):
    sink = DatabaseSink(any_db)
    assert sink.write([entry(1), entry(2), entry(2)]) == 0  # in one batch
    assert sink.write([entry(2), entry(3)]) == 0  # and in a later one
    assert request_ids(any_db) == ["s1", "s2", "s2", "s2", "s3"]
    sink.close()


def test_a_batch_written_again_is_stored_once_with_its_shared_request_ids(any_db):
    sink = DatabaseSink(any_db)
    batch = [entry(1), entry(2), entry(2)]
    assert sink.write(batch) == 0
    assert sink.write(batch) == 0
    assert request_ids(any_db) == ["s1", "s2", "s2"]
    rows = RequestLog.objects.using(any_db)
    assert sorted(rows.values_list("entry_id", flat=True)) == sorted(e.entry_id for e in batch)
    sink.close()


class LostCommitSink(DatabaseSink):
    """Commits its first write, then fails it, as when the connection dies before the commit's answer arrives."""

    lost = 1

    def write(self, entries) -> int:
        refused = super().write(entries)
        if self.lost:
            self.lost -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return refused


def test_the_recorder_retrying_a_batch_that_had_committed_stores_each_request_once(any_db):
    recorder = Recorder(replace(conf.log_config(), flush_ms=10, database=any_db), LostCommitSink(any_db))
    for e in (entry(1), entry(2), entry(2), entry(3)):
        recorder.add(e)
    assert recorder.flush(10)
    recorder.stop()
    assert recorder.failures == 1, "the first write failed after its commit and was retried"
    assert request_ids(any_db) == ["s1", "s2", "s2", "s3"]
    assert recorder.written == 4 and recorder.dropped == {}


def test_an_invalid_row_is_refused_alone_and_a_stored_one_skipped(any_db, caplog):
    sink = DatabaseSink(any_db)
    stored = entry(4)
    assert sink.write([stored]) == 0
    bad = replace(entry(2), status=-1)  # violates the positive status check (SQLite's INSERT OR IGNORE hid it)
    assert sink.write([entry(1), bad, entry(3), stored]) == 1
    assert sorted(RequestLog.objects.using(any_db).values_list("request_id", flat=True)) == ["s1", "s3", "s4"]
    assert "row s2 refused" in caplog.text
    sink.close()


def test_log_entries_fill_every_column_of_the_table():
    """The sink's INSERT names LogEntry's fields only: a column without one would get no value at all."""
    columns = {f.name for f in RequestLog._meta.concrete_fields if not f.primary_key}
    assert set(FIELDS) == columns


def test_values_of_another_type_are_stored_as_the_orm_stores_them(any_db):
    odd = replace(entry(1), tokens=3.7, model=12, inputs="5", total_ms=2)  # what no caller sends today
    sink = DatabaseSink(any_db)
    assert sink.write([odd]) == 0
    sink.close()
    rows = RequestLog.objects.using(any_db)
    rows.bulk_create([RequestLog(**{name: getattr(odd, name) for name in FIELDS} | {"entry_id": "orm"})])
    written, orm = (rows.get(entry_id=odd.entry_id), rows.get(entry_id="orm"))
    assert [getattr(written, name) for name in FIELDS[:-1]] == [getattr(orm, name) for name in FIELDS[:-1]]
    assert (written.tokens, written.model, written.inputs, written.total_ms) == (3, "12", 5, 2.0)


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


@contextlib.contextmanager
def database_at(alias: str, url: str, django_db_blocker) -> Iterator[str]:
    """Open an empty database at `url` as the connection alias `alias`, with no tables at all."""
    connections.settings[alias] = connections.configure_settings(
        {"default": connections.settings["default"], alias: dj_database_url.parse(url)}
    )[alias]
    try:
        with django_db_blocker.unblock():
            try:
                yield alias
            finally:
                connections[alias].close()
    finally:
        del connections[alias]
        del connections.settings[alias]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path, django_db_blocker):
    """An empty database (a SQLite file, or a fresh PostgreSQL database) to run migrations in."""
    alias = f"migrated_{request.param}"
    if request.param == "sqlite":
        with database_at(alias, f"sqlite:///{tmp_path / 'log.sqlite3'}", django_db_blocker):
            yield alias
        return
    with postgres_database("embedservice_migrate") as name:
        with database_at(alias, f"{POSTGRES_SERVER}/{name}", django_db_blocker):
            yield alias


def migrate_to(using: str, name: str) -> MigrationExecutor:
    executor = MigrationExecutor(connections[using])
    executor.migrate([("vectors", name)])
    return executor


def test_the_migration_keeps_the_rows_and_lets_a_request_id_repeat(empty_database):
    using = empty_database
    old = migrate_to(using, "0001_initial").loader.project_state(("vectors", "0001_initial")).apps
    OldRequestLog = old.get_model("vectors", "RequestLog")
    now = datetime.now(UTC)
    OldRequestLog.objects.using(using).bulk_create(
        OldRequestLog(request_id=f"old{i}", created_at=now, endpoint="tei", status=200, total_ms=i) for i in range(3)
    )

    migrate_to(using, "0002_requestlog_entry_id")

    rows = list(RequestLog.objects.using(using).order_by("pk"))
    assert [(r.request_id, r.total_ms, r.entry_id) for r in rows] == [
        ("old0", 0, None),
        ("old1", 1, None),
        ("old2", 2, None),
    ]
    # A process of the previous release, still running in a rolling deploy, writes rows without an entry id.
    OldRequestLog.objects.using(using).bulk_create(
        OldRequestLog(request_id=f"late{i}", created_at=now, endpoint="tei", status=200, total_ms=i) for i in range(2)
    )
    sink = DatabaseSink(using)
    assert sink.write([replace(entry(1), request_id="old0"), replace(entry(2), request_id="old0")]) == 0
    assert request_ids(using) == ["late0", "late1", "old0", "old0", "old0", "old1", "old2"]
    sink.close()
    made = RequestLog.objects.using(using).exclude(entry_id=None).first()
    with pytest.raises(IntegrityError), transaction.atomic(using=using):  # the row identity is unique
        RequestLog.objects.using(using).create(
            entry_id=made.entry_id, request_id="new", created_at=now, endpoint="tei", status=200, total_ms=1
        )
    connection = connections[using]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, RequestLog._meta.db_table)
    on_request_id = [c for c in constraints.values() if c["columns"] == ["request_id"]]
    assert on_request_id and not any(c["unique"] for c in on_request_id), "indexed for the admin's search, not unique"
    assert any(c["unique"] for c in constraints.values() if c["columns"] == ["entry_id"])
