"""Put request-log entries into RequestLog: one transaction per batch, invalid rows refused one by one."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import fields

from django.db import DataError, IntegrityError, connections, transaction
from django.db import Error as DatabaseError

from . import retention
from .logwriter import LogEntry
from .models import RequestLog

logger = logging.getLogger(__name__)

FIELDS = tuple(f.name for f in fields(LogEntry))


def to_row(entry: LogEntry) -> RequestLog:
    return RequestLog(**{name: getattr(entry, name) for name in FIELDS})


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
        connections[self.using].close_if_unusable_or_obsolete()
        rows = [to_row(entry) for entry in entries]
        try:
            with transaction.atomic(using=self.using):
                RequestLog.objects.using(self.using).bulk_create(rows, ignore_conflicts=True)
            refused = 0
        except (IntegrityError, DataError):
            refused = self._one_by_one(rows)
        self._maybe_trim()
        return refused

    def _one_by_one(self, rows: list[RequestLog]) -> int:
        """Insert rows singly so one invalid row costs only itself; return how many were refused."""
        refused = 0
        for row in rows:
            try:
                with transaction.atomic(using=self.using):
                    RequestLog.objects.using(self.using).bulk_create([row], ignore_conflicts=True)
            except (IntegrityError, DataError) as exc:
                refused += 1
                logger.warning("request log: row %s refused: %s", row.request_id, exc)
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
