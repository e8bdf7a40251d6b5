"""Put request-log entries into RequestLog: one transaction per batch, invalid rows refused one by one."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import fields

from django.db import DataError, IntegrityError, connections, transaction
from django.db import Error as DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.db.models.constants import OnConflict

from . import retention
from .logwriter import LogEntry
from .models import RequestLog

logger = logging.getLogger(__name__)

FIELDS = tuple(f.name for f in fields(LogEntry))


def insert_statement(connection: BaseDatabaseWrapper) -> str:
    """One row's INSERT into RequestLog, skipping a row whose `entry_id` is stored already, in the database's
    own dialect (Django's, as `bulk_create(ignore_conflicts=True)` writes it)."""
    ops = connection.ops
    model_fields = columns_of_entries()
    columns = ", ".join(ops.quote_name(field.column) for field in model_fields)
    placeholders = ", ".join(["%s"] * len(model_fields))
    table = ops.quote_name(RequestLog._meta.db_table)
    suffix = ops.on_conflict_suffix_sql(model_fields, OnConflict.IGNORE, None, None)
    return f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {table} ({columns}) VALUES ({placeholders}) {suffix}"


# Values every database driver takes as they are; the rest (the time) are converted by their model field.
PLAIN_TYPES = frozenset({str, int, float, type(None)})


def row_values(entry: LogEntry, connection: BaseDatabaseWrapper) -> tuple:
    """`entry`'s values as the database stores them: a datetime converted by its model field as the ORM does
    (naive UTC text on SQLite), a string or a number as it is."""
    values = []
    for field in columns_of_entries():
        value = getattr(entry, field.name)
        values.append(value if type(value) in PLAIN_TYPES else field.get_db_prep_save(value, connection))
    return tuple(values)


@functools.cache
def columns_of_entries() -> tuple[Field, ...]:
    """RequestLog's fields for LogEntry's, in LogEntry's order."""
    return tuple(RequestLog._meta.get_field(name) for name in FIELDS)


class DatabaseSink:
    """The recorder's sink for the real database; lives on (and connects from) the writer thread.

    Every entry becomes a row, whatever its request id (clients reuse their X-Request-IDs). A batch
    written again - the recorder retries after an error, and the failed attempt may have committed -
    is stored once: each entry's `entry_id` is unique in the table, and the insert ignores conflicts.
    With `max_rows`, the table is trimmed back to that many rows at most once a minute, after a
    successful write.
    """

    trim_every_s = 60.0
    clock = staticmethod(time.monotonic)

    def __init__(self, using: str = "default", max_rows: int = 0) -> None:
        self.using = using
        self.max_rows = max_rows
        self._trimmed_at: float | None = None

    def write(self, entries: Sequence[LogEntry]) -> int:
        connection = connections[self.using]
        connection.close_if_unusable_or_obsolete()
        try:
            self._insert(connection, entries)
            refused = 0
        except (IntegrityError, DataError):
            refused = self._one_by_one(connection, entries)
        self._maybe_trim()
        return refused

    def _insert(self, connection: BaseDatabaseWrapper, entries: Sequence[LogEntry]) -> None:
        """Insert `entries` in one transaction, one prepared statement for all rows.

        Not `bulk_create`: it builds a model instance and the SQL text for every row, about 55 us of CPU a
        row on the writer thread, which takes the GIL from the event loop; this is about 10 us a row.
        """
        values = [row_values(entry, connection) for entry in entries]
        with transaction.atomic(using=self.using), connection.cursor() as cursor:
            cursor.executemany(insert_statement(connection), values)

    def _one_by_one(self, connection: BaseDatabaseWrapper, entries: Sequence[LogEntry]) -> int:
        """Insert rows singly so one invalid row costs only itself; return how many were refused."""
        refused = 0
        for entry in entries:
            try:
                self._insert(connection, [entry])
            except (IntegrityError, DataError) as exc:
                refused += 1
                logger.warning("request log: row %s refused: %s", entry.request_id, exc)
        return refused

    def _maybe_trim(self) -> None:
        now = self.clock()
        if not self.max_rows or (self._trimmed_at is not None and now - self._trimmed_at < self.trim_every_s):
            return
        self._trimmed_at = now
        try:
            deleted = retention.trim_to(self.max_rows, using=self.using)
        except DatabaseError as exc:
            logger.warning("request log: trimming to %d rows failed (%s); next try in a minute", self.max_rows, exc)
            return
        if deleted:
            logger.info("request log: trimmed %d rows to keep at most %d", deleted, self.max_rows)

    def reset(self) -> None:
        # The connection may be broken (server gone, socket dead): closing it can fail too, and that
        # is fine - Django opens a fresh one on the next write.
        with suppress(DatabaseError):
            connections[self.using].close()

    def close(self) -> None:
        self.reset()
