"""The request log behind a real server: a locked database, a tiny buffer, SIGTERM, PostgreSQL via DATABASE_URL."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
import psycopg
import pytest

from tests.conftest import start_server, stop_server, wait_until

pytestmark = pytest.mark.e2e

BUSY_TIMEOUT_S = 5  # settings.py: DATABASES["default"]["OPTIONS"]["timeout"] for SQLite


async def mixed_load(url: str, count: int) -> dict[str, int]:
    """Send `count` requests, every fifth one failing on purpose; return request id -> status seen."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(i: int) -> httpx.Response:
            if i % 5 == 4:
                return await client.post("/v1/embeddings", json={"input": ""})
            if i % 2:
                return await client.post("/v1/embeddings", json={"input": f"sentence number {i}"})
            return await client.get("/get_vector", params={"sentence": f"sentence number {i}"})

        answers = await asyncio.gather(*(one(i) for i in range(count)))
    assert [a.status_code for a in answers] == [400 if i % 5 == 4 else 200 for i in range(count)]
    return {a.headers["x-request-id"]: a.status_code for a in answers}


def sqlite_rows(path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT request_id, status FROM vectors_requestlog"))


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def test_requests_succeed_while_the_database_is_locked_and_every_row_arrives_after(tmp_path):
    server = start_server(tmp_path, {"EMBED_LOG_FLUSH_MS": "100"})
    try:
        db_path = tmp_path / "db.sqlite3"
        await mixed_load(server.url, 5)  # warm up; these rows go in first
        assert wait_until(lambda: len(sqlite_rows(db_path)) == 5, 10)
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        try:
            seen = await mixed_load(server.url, 100)
            assert time.monotonic() - locked_at < BUSY_TIMEOUT_S, "the requests waited for the database"
            while time.monotonic() - locked_at < BUSY_TIMEOUT_S + 3:
                time.sleep(0.2)  # hold the lock past the busy timeout: writes must fail, then retry
            assert metric(server.url, "embed_log_flush_failures_total") >= 1
            assert metric(server.url, "embed_log_buffer_rows") == 100
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert wait_until(lambda: len(sqlite_rows(db_path)) == 105, 40)
        rows = sqlite_rows(db_path)
        assert {rid: rows[rid] for rid in seen} == seen
        assert metric(server.url, "embed_log_rows_dropped_total") == 0
    finally:
        stop_server(server)


async def test_with_a_tiny_buffer_drops_are_counted_and_exposed(tmp_path):
    server = start_server(tmp_path, {"EMBED_LOG_BUFFER_ROWS": "5", "EMBED_LOG_FLUSH_MS": "50"})
    try:
        db_path = tmp_path / "db.sqlite3"
        await mixed_load(server.url, 1)
        assert wait_until(lambda: len(sqlite_rows(db_path)) == 1, 10)
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            await mixed_load(server.url, 30)
            assert metric(server.url, 'embed_log_rows_dropped_total{reason="buffer_full"}') == 25
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert wait_until(lambda: len(sqlite_rows(db_path)) == 6, 30)
    finally:
        stop_server(server)


async def test_sigterm_writes_the_buffered_rows_before_exit(tmp_path):
    # Nothing would be written for a minute: only the stop hook can put these rows in.
    server = start_server(tmp_path, {"EMBED_LOG_FLUSH_MS": "60000", "EMBED_LOG_FLUSH_ROWS": "1000"})
    try:
        seen = await mixed_load(server.url, 40)
        assert sqlite_rows(tmp_path / "db.sqlite3") == {}
    finally:
        assert stop_server(server) == 0
    assert sqlite_rows(tmp_path / "db.sqlite3") == seen


async def test_on_postgresql_every_request_has_its_row(tmp_path, postgres_url):
    server = start_server(tmp_path, {"DATABASE_URL": postgres_url, "EMBED_LOG_FLUSH_MS": "100"})
    try:
        seen = await mixed_load(server.url, 60)
    finally:
        assert stop_server(server) == 0
    with psycopg.connect(postgres_url) as db:
        rows = dict(db.execute("SELECT request_id, status FROM vectors_requestlog").fetchall())
    assert rows == seen
