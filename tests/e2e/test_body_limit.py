"""A body over EMBED_MAX_BODY_BYTES is refused as soon as it is known to be, on both servers and every route,
and on daphne however it is started (`manage.py serve`, `runserver`, a bare `daphne`).

daphne buffers a whole body before the application sees it, and Django's ASGI handler reads one of any
size: without the limit at the server a 100 MB Content-Length got its 413 only after 100 MB, and an
endless chunked body filled the disk.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, LiveServer, content_length, start_server, stop_server

pytestmark = pytest.mark.e2e

LIMIT = 100_000


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def small_limit_server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"limit-{request.param}")
    server = start_server(tmp, env_extra={"EMBED_MAX_BODY_BYTES": str(LIMIT)}, args=("--server", request.param))
    yield server, tmp
    stop_server(server)


def connect(server) -> socket.socket:
    return socket.create_connection(server.address, timeout=10)


def read_answer(conn: socket.socket) -> tuple[bytes, dict]:
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
        chunk = conn.recv(65536)
        if not chunk:
            break
        answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    return head, json.loads(body)


@pytest.mark.parametrize("path", ["/v1/embeddings", "/admin/login/"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(small_limit_server, path):
    server, _ = small_limit_server
    with connect(server) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000000\r\nX-Request-ID: declared-{len(path)}\r\n\r\n".encode()
        )
        head, body = read_answer(conn)  # not one byte of the body was sent
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert f"x-request-id: declared-{len(path)}".encode() in head.lower()
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["message"] == f"request body has 100000000 bytes; the limit is {LIMIT}"


# daphne without `manage.py serve`: its own command line, and Django's runserver (daphne's, as daphne is an app).
DAPHNE = str(Path(sys.executable).with_name("daphne"))  # the venv's `daphne` command
OTHER_DAPHNES = {
    "daphne": [DAPHNE, "-b", "127.0.0.1", "-p", "0", "embedservice.asgi:application"],
    "runserver": [sys.executable, "manage.py", "runserver", "127.0.0.1:0", "--noreload"],
}


def start_other_daphne(how: str, tmp: Path) -> LiveServer:
    """Start daphne `how` ('daphne' or 'runserver') on a free loopback port and wait until it listens."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "embedservice.settings",
        "EMBED_DATA_DIR": str(tmp),
        "EMBED_MAX_BODY_BYTES": str(LIMIT),
        "EMBED_LOG_REQUESTS": "false",  # no database to migrate: no request here reaches the application
    }
    log_path = tmp / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(OTHER_DAPHNES[how], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"Listening on TCP address (127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if match:
            return LiveServer(f"http://{match.group(1)}", process, log_path)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{how} did not start:\n{log_path.read_text(errors='replace')}")


@pytest.mark.parametrize("how", OTHER_DAPHNES)
def test_daphne_started_without_serve_refuses_a_declared_length_over_the_limit_before_the_body(how, tmp_path):
    server = start_other_daphne(how, tmp_path)
    try:
        with connect(server) as conn:
            conn.settimeout(3)  # daphne alone waits for all 100 MB before the app answers: no answer, a timeout
            conn.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000000\r\nX-Request-ID: not-served\r\n\r\n"
            )
            head, body = read_answer(conn)  # not one byte of the body was sent
    finally:
        # At once, while the refused request is still on daphne's books: its exit passes over it (it stopped
        # there with a KeyError, before cancelling the applications, and never said how many it had killed).
        exit_code = stop_server(server, timeout_s=10)
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"x-request-id: not-served" in head.lower()
    assert body["error"]["message"] == f"request body has 100000000 bytes; the limit is {LIMIT}"
    assert exit_code == 0 and re.search(r"Killed \d+ pending application instances", server.log()), server.log()


@pytest.mark.parametrize("path", ["/v1/embeddings", "/admin/login/"])
def test_a_chunked_body_is_refused_while_it_arrives_and_its_connection_closed(small_limit_server, path):
    server, _ = small_limit_server
    chunk = b"%x\r\n" % 8192 + b"x" * 8192 + b"\r\n"
    with connect(server) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        # A body without end: only an answer given while it arrives ends this loop.
        deadline = time.monotonic() + 20
        while not select.select([conn], [], [], 0)[0] and time.monotonic() < deadline:
            conn.sendall(chunk)
        head, body = read_answer(conn)
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert b"connection: close" in head.lower()
        assert body["error"] == {
            "message": f"request body is larger than {LIMIT} bytes",
            "type": "invalid_request_error",
            "param": None,
            "code": "payload_too_large",
        }
        # Not kept open for the rest of an endless body: the server closes (daphne after draining 2 s).
        conn.settimeout(10)
        try:
            rest = conn.recv(65536)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", rest[:100]


def test_a_client_still_writing_after_the_413_is_not_reset(small_limit_server):
    server, _ = small_limit_server
    with connect(server) as conn:
        conn.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        conn.sendall(b"Content-Length: 100000000\r\n\r\n")
        head, _ = read_answer(conn)
        assert head.startswith(b"HTTP/1.1 413 "), head
        # The body goes on as a client that does not read while it writes would send it: the server half-
        # closed, drains what comes, and closes only later. Closing at once would reset these sends.
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            conn.sendall(b"x" * 65536)
        assert conn.recv(65536) == b"", "the answer was whole; then the server's end of the connection"


def test_the_server_goes_on_serving_and_logs_the_refusals_of_embedding_routes(small_limit_server):
    # Last in this module: it stops the module's server to read the flushed log.
    server, tmp = small_limit_server
    with connect(server) as conn:
        conn.sendall(
            b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200000\r\nX-Request-ID: logged-refusal\r\n\r\n"
        )
        head, _ = read_answer(conn)
    assert head.startswith(b"HTTP/1.1 413 "), head
    with connect(server) as conn:
        conn.sendall(b"GET /get_vector?sentence=still+here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, body = read_answer(conn)
    assert head.startswith(b"HTTP/1.1 200 ") and len(body["vector"]) == 384
    stop_server(server)  # the log is flushed before the process exits
    with sqlite3.connect(tmp / "db.sqlite3") as db:
        rows = db.execute(
            "select endpoint, status, error_code from vectors_requestlog where request_id = 'logged-refusal'"
        )
        assert rows.fetchall() == [("tei", 413, "payload_too_large")]
