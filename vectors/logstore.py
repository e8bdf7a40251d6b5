"""Put request-log entries into RequestLog: one transaction per batch, invalid rows refused one by one."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, fields

from django.db import DataError, IntegrityError, connections, transaction
from django.db import Error as DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from . import retention
from .logwriter import LogEntry
from .models import RequestLog

logger = logging.getLogger(__name__)

FIELDS = tuple(f.name for f in fields(LogEntry))


def insert_statement(connection: BaseDatabaseWrapper) -> str:
    """One row's INSERT into RequestLog that skips a row whose `entry_id` is stored already.

    `ON CONFLICT DO NOTHING` (PostgreSQL, SQLite 3.24+) skips uniqueness conflicts only, so a row that breaks
    another constraint (a negative status, a NULL where none may be) still fails and is refused alone, with
    a warning. `bulk_create(ignore_conflicts=True)`, which this replaces, writes SQLite's `INSERT OR IGNORE`,
    which dropped such a row without a word.
    """
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column.field.column) for column in columns_of_entries())
    placeholders = ", ".join(["%s"] * len(FIELDS))
    return f"INSERT INTO {quote(RequestLog._meta.db_table)} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"


@dataclass(frozen=True)
class Column:
    """A RequestLog field that a LogEntry field fills, and the one value type it stores as it comes."""

    field: Field
    plain: type | None  # str, int or float: passed to the driver unconverted; else the field converts it

    def value(self, value: object, connection: BaseDatabaseWrapper) -> object:
        if type(value) is self.plain or (value is None and self.field.null):
            return value
        return self.field.get_db_prep_save(value, connection)


PLAIN_TYPES = {"CharField": str, "FloatField": float, "PositiveIntegerField": int, "PositiveSmallIntegerField": int}


@functools.cache
def columns_of_entries() -> tuple[Column, ...]:
    """RequestLog's columns for LogEntry's fields, in LogEntry's order."""
    model_fields = [RequestLog._meta.get_field(name) for name in FIELDS]
    return tuple(Column(field, PLAIN_TYPES.get(field.get_internal_type())) for field in model_fields)


def row_values(entry: LogEntry, connection: BaseDatabaseWrapper) -> tuple:
    """`entry`'s values as the ORM would store them: each converted by its model field (the time to naive
    UTC text on SQLite), except a value already of its column's plain type (a string for a CharField, an
    int for an integer field, a float for a FloatField, None where NULL is allowed), which the field would
    return unchanged."""
    return tuple(column.value(getattr(entry, column.field.name), connection) for column in columns_of_entries())


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
        statement = insert_statement(connection)
        rows = [row_values(entry, connection) for entry in entries]
        try:
            self._insert(connection, statement, rows)
            refused = 0
        except (IntegrityError, DataError):
            refused = self._one_by_one(connection, statement, entries, rows)
        self._maybe_trim()
        return refused

    def _insert(self, connection: BaseDatabaseWrapper, statement: str, rows: Sequence[tuple]) -> None:
        """Insert `rows` in one transaction, one statement executed for every row (prepared once on SQLite,
        pipelined on PostgreSQL).

        Not `bulk_create`: it builds a model instance and the SQL text for every row, on the writer thread,
        which holds the GIL against the event loop meanwhile: about three times the CPU a row on SQLite
        (`bench/log_writer.py`).
        """
        with transaction.atomic(using=self.using), connection.cursor() as cursor:
            cursor.executemany(statement, rows)

    def _one_by_one(
        self, connection: BaseDatabaseWrapper, statement: str, entries: Sequence[LogEntry], rows: Sequence[tuple]
    ) -> int:
        """Insert rows singly so one invalid row costs only itself; return how many were refused."""
        refused = 0
        for entry, row in zip(entries, rows, strict=True):
            try:
                self._insert(connection, statement, [row])
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
