"""The write-behind buffer: requests append to a bounded deque; ONE writer thread empties it in batches."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.db import Error as DatabaseError

from . import conf, metrics, shutdown
from .ids import new_id

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 0.05  # first pause after a failed write; doubles up to LogConfig.retry_max_ms


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request as the log keeps it; the field names are RequestLog's columns.

    `entry_id` is this entry's own identity, drawn when it is made: a batch written again keeps its
    ids, so the sink stores it once. `request_id` is the answer's x-request-id, which several requests
    may share (a client's own X-Request-ID, reused or resent).
    """

    request_id: str
    created_at: datetime
    endpoint: str
    model: str
    caller: str
    status: int
    error_code: str = ""
    inputs: int = 0
    tokens: int = 0
    total_ms: float = 0.0
    queue_ms: float | None = None
    inference_ms: float | None = None
    batch_size: int | None = None
    text_sample: str = ""
    entry_id: str = field(default_factory=new_id)


class Sink(Protocol):
    """Where the writer thread puts entries (the database; a list in tests)."""

    def write(self, entries: Sequence[LogEntry]) -> int:
        """Store `entries`; return how many were refused as bad data. Raise DatabaseError to be retried.

        A retried batch may already be stored (a commit whose answer was lost): an entry whose
        `entry_id` is stored already must not be stored again.
        """

    def reset(self) -> None:
        """Forget the connection after a failure, so the next write starts afresh."""

    def close(self) -> None:
        """Release the connection (called on the writer thread as it ends)."""


class Recorder:
    """Keep log entries in a bounded buffer and write them from one thread, in bulk, retrying on failure.

    `add` is all the request path does: a short lock, a deque append, no database, never an
    exception. The writer wakes when `flush_rows` entries wait or `flush_ms` after the oldest
    arrived and inserts up to `flush_rows` per transaction. A database error keeps the batch and
    retries it with exponential backoff while new entries keep buffering (the same entries, ids
    included: the sink stores once a batch that the failed attempt committed); once `buffer_rows`
    are held, new entries are dropped and counted. `stop` writes what is left, waiting for the
    database at most `stop_timeout_s`.
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, config: conf.LogConfig, sink: Sink) -> None:
        self.config = config
        self._sink = sink
        self._buffer: deque[LogEntry] = deque()
        self._held = 0  # entries the writer has taken and not yet written
        self._oldest_at: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._flush_requested = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._closed = False
        self._abandoned = False  # stop gave up on a write still in progress and counted its rows as lost
        self.written = 0
        self.failures = 0
        self.dropped: dict[str, int] = {}

    # -- the request path -----------------------------------------------------------------

    def add(self, entry: LogEntry) -> None:
        """Queue one entry for writing; drop (and count) it when the buffer is full or the recorder stopped."""
        if not self.config.enabled:
            return
        start = False
        with self._lock:
            if self._closed:
                reason: str | None = "stopped"
            elif len(self._buffer) + self._held >= self.config.buffer_rows:
                reason = "buffer_full"
            else:
                reason = None
                was_empty = not self._buffer
                if was_empty:
                    self._oldest_at = self.clock()
                self._buffer.append(entry)
                # Wake the writer when its deadline starts (it sleeps untimed on an empty buffer) and when
                # a full batch waits; not on every row.
                if was_empty or len(self._buffer) == self.config.flush_rows:
                    self._wake.notify()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
                    start = True
        if reason is not None:
            self._count_dropped(reason, 1)
        elif start:
            self._thread.start()  # type: ignore[union-attr]
            shutdown.on_shutdown(self.stop)
            atexit.register(self.stop)

    # -- control --------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Entries waiting to be written (taken by the writer included)."""
        return len(self._buffer) + self._held

    def poke(self) -> None:
        """Make the writer look at the clock again (tests that move an injected clock)."""
        with self._lock:
            self._wake.notify()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Write everything buffered now; return False if it is not all written within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if self._thread is None:
                return not self._buffer
            self._flush_requested = True
            self._wake.notify()
            while self._buffer or self._held:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(remaining)
            return True

    def stop(self, timeout_s: float | None = None) -> None:
        """Write what is buffered (waiting for the database at most `timeout_s`), then end the writer."""
        timeout = self.config.stop_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._stop_deadline = time.monotonic() + timeout
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout + 1.0)
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
            if thread is not None and thread.is_alive():
                # The writer is still inside a database call past the deadline: the process exits with its
                # batch, so those rows are counted as lost here (should the call still end, not again).
                left += self._held
                self._held = 0
                self._abandoned = True
        if left:
            self._count_dropped("stopped", left)
            logger.error("request log: %d rows were not written before stop", left)

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._write(batch)
        except BaseException:
            with self._lock:
                lost = len(self._buffer) + self._held
                self._buffer.clear()
                self._held = 0
                self._closed = True
                self._idle.notify_all()
            logger.exception("request-log writer died; %d buffered rows are lost", lost)
            self._count_dropped("write_error", lost)
        finally:
            metrics.LOG_BUFFER.set(self.buffered)
            self._sink.close()

    def _due(self) -> bool:
        waiting = len(self._buffer)
        if not waiting:
            return False
        if self._stopping or self._flush_requested or waiting >= self.config.flush_rows:
            return True
        return self.clock() - (self._oldest_at or 0.0) >= self.config.flush_ms / 1000

    def _next_batch(self) -> list[LogEntry] | None:
        """Wait until a batch is due and take it; None once stopping with nothing left."""
        with self._lock:
            while not self._due():
                if not self._buffer:
                    self._flush_requested = False
                    self._idle.notify_all()
                    if self._stopping:
                        return None
                    timeout = None
                else:
                    timeout = max(0.0, self.config.flush_ms / 1000 - (self.clock() - (self._oldest_at or 0.0)))
                self._wake.wait(timeout)
            if self._stopping and time.monotonic() >= self._stop_deadline:
                # Out of time at stop (the database is still failing): what is left is lost, and counted.
                lost = len(self._buffer)
                self._buffer.clear()
                self._idle.notify_all()
                batch = None
            else:
                take = min(len(self._buffer), self.config.flush_rows)
                batch = [self._buffer.popleft() for _ in range(take)]
                self._held = take
                self._oldest_at = self.clock() if self._buffer else None
        if batch is None:
            self._count_dropped("stopped", lost)
            logger.error("request log: %d rows were not written before the stop deadline", lost)
            return None
        metrics.LOG_BUFFER.set(self.buffered)
        return batch

    def _write(self, batch: list[LogEntry]) -> None:
        """Write one batch, retrying with backoff while the database fails; give up only at stop."""
        delay = RETRY_FIRST_S
        attempts = 0
        while True:
            try:
                refused = self._sink.write(batch)
            except DatabaseError as exc:
                attempts += 1
                self.failures += 1
                metrics.LOG_FLUSH_FAILURES.inc()
                if attempts == 1:
                    logger.warning("request log: writing %d rows failed (%s); retrying", len(batch), exc)
                self._sink.reset()
                if not self._pause(delay):
                    self._settle(batch, lost=len(batch), reason="stopped")
                    logger.error("request log: database still failing at stop; %d rows lost", len(batch))
                    return
                delay = min(delay * 2, self.config.retry_max_ms / 1000)
                continue
            except Exception:
                # Not a database condition that time can cure (a bug, a closed test database): retrying the
                # same rows would stall the log forever, so this batch is dropped, loudly and counted.
                self.failures += 1
                metrics.LOG_FLUSH_FAILURES.inc()
                logger.exception("request log: could not write %d rows; dropping them", len(batch))
                self._sink.reset()
                self._settle(batch, lost=len(batch), reason="write_error")
                return
            if attempts:
                logger.info("request log: database back after %d failed attempts", attempts)
            if refused:
                logger.warning("request log: the database refused %d rows as invalid", refused)
            self._settle(batch, lost=refused, reason="rejected")
            return

    def _pause(self, delay_s: float) -> bool:
        """Wait `delay_s` before a retry; False when stopping and the stop deadline has passed."""
        until = time.monotonic() + delay_s
        with self._lock:
            while True:
                now = time.monotonic()
                if self._stopping:
                    if now >= self._stop_deadline:
                        return False
                    until = min(until, self._stop_deadline)
                if now >= until:
                    return True
                self._wake.wait(until - now)

    def _settle(self, batch: list[LogEntry], *, lost: int, reason: str) -> None:
        with self._lock:
            if self._abandoned:
                return
            self._held = 0
            self.written += len(batch) - lost
            if not self._buffer:
                self._idle.notify_all()
        metrics.LOG_WRITTEN.inc(len(batch) - lost)
        metrics.LOG_BUFFER.set(self.buffered)
        if lost:
            self._count_dropped(reason, lost)

    def _count_dropped(self, reason: str, count: int) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        metrics.LOG_DROPPED.labels(reason).inc(count)
