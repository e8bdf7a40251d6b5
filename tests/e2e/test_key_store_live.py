"""API keys behind a real server on PostgreSQL whose connections are cut (a database restart, a failover)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from tests.conftest import ROOT, start_server, stop_server

pytestmark = pytest.mark.e2e


def create_key(postgres_url: str, name: str) -> str:
    env = dict(os.environ, DATABASE_URL=postgres_url)
    done = subprocess.run(
        [sys.executable, "manage.py", "apikey", "create", name],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


def cut_every_connection(postgres_url: str) -> int:
    database = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()) AS cut",
            (database,),
        ).fetchone()
    return cut[0] if cut else 0


def test_keys_keep_working_when_the_key_stores_connections_are_cut(tmp_path, postgres_url):
    env = {"DATABASE_URL": postgres_url, "EMBED_REQUIRE_API_KEY": "1", "EMBED_API_KEY_CACHE_S": "0.2"}
    server = start_server(tmp_path, env)
    try:
        first = create_key(postgres_url, "first")
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def status(key: str) -> int:
                headers = {"Authorization": f"Bearer {key}"}
                return client.get("/get_vector", params={"sentence": "keyed"}, headers=headers).status_code

            assert status(first) == 200
            assert cut_every_connection(postgres_url) >= 1  # the server's key-store connection among them
            time.sleep(0.3)  # the verification is past its time: the next request asks the database
            assert status(first) == 200  # its connection is dead: trusted as verified before
            second = create_key(postgres_url, "second")
            assert status(second) == 200  # a new key needs a real lookup: the server has reconnected
            assert status("not-a-key") == 401
    finally:
        assert stop_server(server) == 0
    log = server.log_path.read_text(errors="replace")
    assert "API key store unavailable" in log
    assert "Traceback" not in log
