"""The write-behind recorder: bounded buffer, one writer thread, flush by size and time, retry, overflow, stop."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

from django.db import OperationalError

from tests.conftest import wait_until
from vectors import conf, metrics, recorder
from vectors.recorder import LogEntry, Recorder

CONFIG = conf.LogConfig(buffer_rows=100, flush_rows=10, flush_ms=1000, retry_max_ms=200, stop_timeout_s=2)


def entry(i: int, status: int = 200) -> LogEntry:
    return LogEntry(f"r{i}", datetime.now(UTC), "openai", "m", "127.0.0.1", status, total_ms=float(i))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    """Records each batch; fails the first `failures` writes with `error`; can block until released."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.batches: list[list[LogEntry]] = []
        self.failures = failures
        self.error = error or OperationalError("database is locked")
        self.attempts: list[float] = []
        self.resets = 0
        self.closed = False
        self.wrote = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def write(self, entries):
        self.gate.wait(5)
        self.attempts.append(time.monotonic())
        if self.failures:
            self.failures -= 1
            raise self.error
        self.batches.append(list(entries))
        self.wrote.set()
        return 0

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True

    @property
    def rows(self) -> list[LogEntry]:
        return [e for batch in self.batches for e in batch]


def make(config: conf.LogConfig = CONFIG, sink: Sink | None = None, clock: FakeClock | None = None):
    sink = sink or Sink()
    rec = Recorder(config, sink)
    if clock is not None:
        rec.clock = clock
    return rec, sink


def test_add_only_buffers_and_the_writer_thread_writes():
    rec, sink = make(clock=FakeClock())
    caller = threading.get_ident()
    writer_threads = []
    original = sink.write

    def write(entries):
        writer_threads.append(threading.get_ident())
        return original(entries)

    sink.write = write
    for i in range(3):
        rec.add(entry(i))
    assert rec.buffered == 3 and sink.batches == []
    assert rec.flush(2)
    assert [e.request_id for e in sink.rows] == ["r0", "r1", "r2"]
    assert writer_threads and caller not in writer_threads
    rec.stop()


def test_writer_flushes_as_soon_as_flush_rows_entries_wait():
    clock = FakeClock()  # frozen: only the size can trigger the write
    rec, sink = make(clock=clock)
    for i in range(9):
        rec.add(entry(i))
    time.sleep(0.05)
    assert sink.batches == []
    rec.add(entry(9))
    assert sink.wrote.wait(2)
    assert [len(b) for b in sink.batches] == [10]
    rec.stop()


def test_writer_flushes_after_flush_ms_on_the_injected_clock():
    clock = FakeClock()
    rec, sink = make(clock=clock)
    rec.add(entry(0))
    rec.add(entry(1))
    clock.now += 0.5
    rec.poke()
    time.sleep(0.05)
    assert sink.batches == [], "written before flush_ms had passed"
    clock.now += 0.6
    rec.poke()
    assert sink.wrote.wait(2)
    assert [e.request_id for e in sink.rows] == ["r0", "r1"]
    rec.stop()


def test_writer_flushes_by_time_with_a_real_clock():
    rec, sink = make(replace(CONFIG, flush_ms=20))
    started = time.monotonic()
    rec.add(entry(0))
    assert sink.wrote.wait(2)
    assert time.monotonic() - started >= 0.015
    rec.stop()


def test_rows_arriving_after_an_idle_spell_are_written_by_time():
    rec, sink = make(replace(CONFIG, flush_ms=20))
    rec.add(entry(0))
    assert sink.wrote.wait(2)
    time.sleep(0.05)  # the writer now sleeps on an empty buffer
    sink.wrote.clear()
    rec.add(entry(1))
    assert sink.wrote.wait(2), "a lone row after an idle spell must not wait for flush_rows"
    assert [e.request_id for e in sink.rows] == ["r0", "r1"]
    rec.stop()


def test_batches_never_exceed_flush_rows():
    rec, sink = make(replace(CONFIG, buffer_rows=1000), clock=FakeClock())
    sink.gate.clear()  # hold the writer so everything piles up
    for i in range(35):
        rec.add(entry(i))
    sink.gate.set()
    assert rec.flush(3)
    assert max(len(b) for b in sink.batches) <= 10
    assert [e.request_id for e in sink.rows] == [f"r{i}" for i in range(35)]
    rec.stop()


def test_failed_writes_keep_the_rows_and_retry_with_growing_pauses():
    before = metrics.LOG_FLUSH_FAILURES._value.get()
    rec, sink = make(sink=Sink(failures=3), clock=FakeClock())
    for i in range(4):
        rec.add(entry(i))
    assert rec.flush(5)
    assert [e.request_id for e in sink.rows] == ["r0", "r1", "r2", "r3"]
    assert len(sink.attempts) == 4 and sink.resets == 3
    pauses = [b - a for a, b in zip(sink.attempts, sink.attempts[1:], strict=False)]
    assert pauses[0] >= recorder.RETRY_FIRST_S * 0.9
    assert pauses[1] > pauses[0] and pauses[2] > pauses[1]
    assert rec.failures == 3 and rec.written == 4 and rec.dropped == {}
    assert metrics.LOG_FLUSH_FAILURES._value.get() - before == 3
    rec.stop()


def test_backoff_stops_growing_at_retry_max_ms():
    rec, sink = make(replace(CONFIG, retry_max_ms=60), sink=Sink(failures=5), clock=FakeClock())
    rec.add(entry(0))
    assert rec.flush(5)
    pauses = [b - a for a, b in zip(sink.attempts, sink.attempts[1:], strict=False)]
    assert max(pauses) < 0.06 + 0.05
    rec.stop()


def test_rows_added_while_the_database_is_down_arrive_once_it_is_back():
    sink = Sink(failures=10_000)
    rec, _ = make(replace(CONFIG, flush_ms=5), sink=sink)
    for i in range(50):
        rec.add(entry(i))
    assert wait_until(lambda: len(sink.attempts) >= 3, 3, interval_s=0.005)
    assert sink.rows == [] and rec.buffered == 50
    sink.failures = 0
    assert rec.flush(5)
    assert sorted(e.request_id for e in sink.rows) == sorted(f"r{i}" for i in range(50))
    rec.stop()


def test_full_buffer_drops_new_entries_and_counts_them():
    before = metrics.LOG_DROPPED.labels("buffer_full")._value.get()
    rec, sink = make(replace(CONFIG, buffer_rows=5), sink=Sink(failures=10_000), clock=FakeClock())
    for i in range(12):
        rec.add(entry(i))
    assert rec.buffered == 5
    assert rec.dropped == {"buffer_full": 7}
    assert metrics.LOG_DROPPED.labels("buffer_full")._value.get() - before == 7
    sink.failures = 0
    assert rec.flush(5)
    assert [e.request_id for e in sink.rows] == [f"r{i}" for i in range(5)], "the oldest rows are kept"
    rec.stop()


def test_stop_writes_what_is_buffered_and_ends_the_thread():
    rec, sink = make(clock=FakeClock())  # frozen clock: nothing is due until stop
    for i in range(7):
        rec.add(entry(i))
    thread = rec._thread
    rec.stop()
    assert [e.request_id for e in sink.rows] == [f"r{i}" for i in range(7)]
    assert not thread.is_alive() and sink.closed


def test_stop_gives_up_at_its_deadline_when_the_database_stays_down():
    rec, sink = make(replace(CONFIG, stop_timeout_s=0.3), sink=Sink(failures=10_000), clock=FakeClock())
    for i in range(25):
        rec.add(entry(i))
    started = time.monotonic()
    rec.stop()
    assert time.monotonic() - started < 2
    assert rec.dropped == {"stopped": 25} and rec.buffered == 0


def test_a_write_still_hanging_at_the_stop_deadline_counts_its_rows_as_lost_once():
    sink = Sink()
    sink.gate.clear()  # the database call hangs (a lock held elsewhere, a server that stopped answering)
    rec, _ = make(sink=sink, clock=FakeClock())
    for i in range(10):  # flush_rows: the writer takes these ten and hangs in the call
        rec.add(entry(i))
    assert wait_until(lambda: rec._held == 10, 2, 0.01)
    rec.add(entry(10))
    thread = rec._thread
    rec.stop(timeout_s=0.1)
    assert thread.is_alive()
    assert rec.dropped == {"stopped": 11} and rec.buffered == 0
    sink.gate.set()  # the call ends after all: the rows were counted as lost already, not again as written
    thread.join(5)
    assert not thread.is_alive() and rec.dropped == {"stopped": 11} and rec.written == 0


def test_a_writer_that_dies_counts_the_rows_it_held_and_buffered_as_lost(caplog):
    class BrokenReset(Sink):
        def reset(self) -> None:
            raise RuntimeError("bug in the reconnect")

    sink = BrokenReset(failures=1)
    sink.gate.clear()
    rec, _ = make(sink=sink, clock=FakeClock())
    for i in range(10):
        rec.add(entry(i))
    assert wait_until(lambda: rec._held == 10, 2, 0.01)
    for i in range(10, 13):
        rec.add(entry(i))
    thread = rec._thread
    sink.gate.set()
    thread.join(5)
    assert not thread.is_alive()
    assert rec.dropped == {"write_error": 13} and rec.buffered == 0
    assert "request-log writer died; 13 buffered rows are lost" in caplog.text
    rec.add(entry(13))
    assert rec.dropped == {"write_error": 13, "stopped": 1}


def test_add_after_stop_is_counted_not_kept():
    rec, sink = make(clock=FakeClock())
    rec.add(entry(0))
    rec.stop()
    rec.add(entry(1))
    assert rec.dropped == {"stopped": 1}
    assert [e.request_id for e in sink.rows] == ["r0"]


def test_stop_is_idempotent_and_safe_without_a_thread():
    rec, _ = make()
    rec.stop()
    rec.stop()
    assert rec._thread is None


def test_an_unexpected_sink_error_drops_that_batch_and_the_writer_lives_on(caplog):
    sink = Sink(failures=1, error=RuntimeError("bug"))
    rec, _ = make(sink=sink, clock=FakeClock())
    rec.add(entry(0))
    assert rec.flush(2)
    assert rec.dropped == {"write_error": 1}
    assert "could not write 1 rows" in caplog.text
    rec.add(entry(1))
    assert rec.flush(2)
    assert [e.request_id for e in sink.rows] == ["r1"]
    rec.stop()


def test_rows_the_database_refuses_are_counted_as_rejected():
    class Refusing(Sink):
        def write(self, entries):
            super().write(entries)
            return 1

    rec, _ = make(sink=Refusing(), clock=FakeClock())
    rec.add(entry(0))
    rec.add(entry(1))
    assert rec.flush(2)
    assert rec.dropped == {"rejected": 1} and rec.written == 1
    rec.stop()


def test_a_disabled_recorder_keeps_nothing():
    rec, sink = make(replace(CONFIG, enabled=False))
    rec.add(entry(0))
    assert rec.buffered == 0 and rec._thread is None


def test_add_request_cuts_fields_to_their_columns_and_keeps_text_only_when_asked(request_log):
    recorder.add_request(
        request_id="x" * 100,
        endpoint="openai",
        model="m" * 300,
        caller="10.0.0.1",
        status=200,
        total_ms=1.5,
        text="secret " * 100,
    )
    (logged,) = request_log.entries()
    assert len(logged.request_id) == 64 and len(logged.model) == 128
    assert logged.text_sample == "", "text is kept only with EMBED_LOG_TEXT"

    rec, sink = make(replace(CONFIG, log_text=True))
    recorder.set_recorder(rec)
    recorder.add_request(
        request_id="a", endpoint="tei", model="m", caller="c", status=200, total_ms=1, text="hello " * 100
    )
    assert rec.flush(2)
    assert sink.rows[0].text_sample == ("hello " * 100)[: recorder.TEXT_SAMPLE_CHARS]
    rec.stop()


def test_add_costs_microseconds():
    rec, _ = make(replace(CONFIG, buffer_rows=10_000, flush_rows=10_000), clock=FakeClock())
    rec.add(entry(0))  # starts the writer thread
    entries = [entry(i) for i in range(1, 1001)]
    started = time.perf_counter()
    for e in entries:
        rec.add(e)
    per_add_us = (time.perf_counter() - started) / len(entries) * 1e6
    assert per_add_us < 100  # generous: typically ~1 us, but this is a shared, busy machine
    rec.stop()


def test_a_settings_change_remakes_only_the_recorder_made_from_settings(request_log):
    # An installed recorder (here the test fixture's list) is its installer's: were it swapped for one made
    # from settings, that one would write into the test database from a thread of its own, at any later time.
    from django.conf import settings
    from django.test import override_settings

    from vectors import recorder

    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "LOG_FLUSH_MS": 50}):
        assert recorder.get_recorder() is request_log
    recorder.set_recorder(None)
    made = recorder.get_recorder()  # from settings (nothing is added, so its writer never starts)
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "LOG_FLUSH_MS": 50}):
        remade = recorder.get_recorder()
        assert remade is not made and remade.config.flush_ms == 50
    recorder.set_recorder(request_log)
    remade.stop(timeout_s=1)
