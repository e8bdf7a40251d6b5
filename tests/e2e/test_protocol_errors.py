"""What the servers themselves answer, before any route sees a request: HTTP their parser refuses, and a
request that does not arrive within `serve --read-timeout`. Both answer the API's JSON error, on both
servers; an answer owed to a request sent before on the same connection comes first.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time

import pytest
import websockets

from tests.conftest import content_length, start_server, stop_server

pytestmark = pytest.mark.e2e

READ_TIMEOUT_S = 1.5
DRAIN_TIMEOUT_S = 30
HOST = b"Host: 127.0.0.1\r\n"
VALID = b"GET /get_vector?sentence=hello HTTP/1.1\r\n" + HOST + b"\r\n"


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"protocol-{request.param}")
    args = ("--server", request.param, "--read-timeout", str(READ_TIMEOUT_S), "--drain-timeout", str(DRAIN_TIMEOUT_S))
    live = start_server(tmp, args=args)
    yield live
    stop_server(live)


def exchange(server, pieces: list[bytes], pause_s: float = 0.0) -> tuple[list[tuple[bytes, bytes]], bool, float]:
    """Send `pieces` (`pause_s` apart) on one connection and read until it closes or stays quiet for 6 s.

    Returns the answers (head, body) in order, whether the server closed the connection, and the seconds
    from the first piece to the end of reading.
    """
    started = time.monotonic()
    raw, closed = b"", False
    with socket.create_connection(server.address, timeout=6) as conn:
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(pause_s)
        try:
            while chunk := conn.recv(65536):
                raw += chunk
            closed = True
        except TimeoutError:
            pass
    return split_answers(raw), closed, time.monotonic() - started


def split_answers(raw: bytes) -> list[tuple[bytes, bytes]]:
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        )
        answers.append((head, rest[:length]))
        raw = rest[length:]
    return answers


def error_of(answer: tuple[bytes, bytes], status: int) -> dict:
    head, body = answer
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert b"content-type: application/json" in head.lower(), head
    assert b"connection: close" in head.lower(), head
    return json.loads(body)["error"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="request-line"),
        pytest.param(b"GET /health HTTP/1.1\r\n" + HOST + b"No colon here\r\n\r\n", id="header"),
        pytest.param(
            b"POST /embed HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            id="chunk-size",
        ),
    ],
)
def test_http_the_parser_refuses_gets_the_json_400_and_the_connection_closes(server, request_bytes):
    answers, closed, _ = exchange(server, [request_bytes])
    assert len(answers) == 1, answers
    error = error_of(answers[0], 400)
    assert error["code"] == "malformed_http"
    assert error["message"].startswith("the request is not valid HTTP/1.1: ")
    assert closed


BAD_CHUNKED = (
    b"POST /embed HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
)


@pytest.mark.parametrize(
    "malformed",
    [pytest.param(b"GARBAGE\r\n\r\n", id="in-its-head"), pytest.param(BAD_CHUNKED, id="in-its-body")],
)
def test_answers_owed_before_a_malformed_request_on_the_connection_come_first(server, malformed):
    # uvicorn used to close the connection as soon as the parser reached the malformed request, cutting
    # the answers to the valid ones before it.
    answers, closed, _ = exchange(server, [VALID + VALID + malformed])
    assert [head.split(b" ")[1] for head, _ in answers] == [b"200", b"200", b"400"], answers
    assert len(json.loads(answers[1][1])["vector"]) == 384
    assert error_of(answers[2], 400)["code"] == "malformed_http"
    assert closed


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"GET /health HTTP/1.1\r\n" + HOST, id="headers"),
        pytest.param(b"\r\nGET /hea", id="first-line-after-an-empty-line"),
        pytest.param(b"GET http://example.com HTTP/1.1\r\n" + HOST + b"Accept: */*\r\n", id="absolute-url-no-path"),
        pytest.param(
            b"POST /embed HTTP/1.1\r\n"
            + HOST
            + b'Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{"inputs":',
            id="body",
        ),
    ],
)
def test_a_request_not_all_in_within_the_read_timeout_gets_408_and_is_closed(server, sent):
    answers, closed, took_s = exchange(server, [sent])
    assert len(answers) == 1, answers
    error = error_of(answers[0], 408)
    assert error["code"] == "request_timeout"
    assert error["message"] == f"the request's line, headers and body did not all arrive within {READ_TIMEOUT_S:g} s"
    assert closed
    assert READ_TIMEOUT_S <= took_s < READ_TIMEOUT_S + 3


def test_a_request_sent_in_pieces_within_the_read_timeout_is_answered(server):
    pieces = [b"GET /get_vector?sentence=slowly HTTP/1.1\r\n", HOST, b"Connection: close\r\n", b"\r\n"]
    answers, closed, _ = exchange(server, pieces, pause_s=0.25)
    assert len(answers) == 1
    assert answers[0][0].startswith(b"HTTP/1.1 200 "), answers[0][0]
    assert closed


def test_the_read_timeout_does_not_count_the_wait_for_the_next_request(server):
    # A keep-alive connection idle between requests for longer than the timeout is not cut (uvicorn
    # closes one idle for 5 s, daphne for 60 s).
    with socket.create_connection(server.address, timeout=10) as conn:
        for _ in range(2):
            conn.sendall(VALID)
            raw = b""
            while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < content_length(raw):
                raw += conn.recv(65536)
            assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
            time.sleep(READ_TIMEOUT_S + 0.5)


def test_a_websocket_is_not_cut_by_the_read_timeout(server):
    async def idle_then_embed() -> dict:
        host, port = server.address
        async with websockets.connect(f"ws://{host}:{port}/ws/embed/") as ws:
            await asyncio.sleep(READ_TIMEOUT_S + 1)
            await ws.send(json.dumps({"id": 7, "input": "still here"}))
            return json.loads(await ws.recv())

    answer = asyncio.run(idle_then_embed())
    assert answer["id"] == 7
    assert len(answer["embeddings"][0]) == 384


def request_id_of(answer: tuple[bytes, bytes]) -> str:
    head, _ = answer
    lines = head.split(b"\r\n")
    return next(line.split(b":", 1)[1].strip().decode() for line in lines if line.lower().startswith(b"x-request-id:"))


def test_own_answers_are_logged_with_their_status_and_an_unfinished_request_holds_the_drain_to_the_read_timeout(
    server,
):
    # Last in this module: it stops the module's server, with a request that never finishes, to read the
    # flushed log.
    json_head = HOST + b"Content-Type: application/json\r\n"
    sent = {
        "stalled-body": b"POST /embed HTTP/1.1\r\n"
        + json_head
        + b"X-Request-ID: stalled-7\r\nContent-Length: 40\r\n\r\n{",
        "stalled-head": b"GET /get_vector?sentence=hi HTTP/1.1\r\n" + HOST + b"Accept: application/json\r\n",
        "stalled-first-header": b"GET /get_vector?sentence=hi HTTP/1.1\r\nHo",
        "stalled-other-route": b"GET /health HTTP/1.1\r\n" + HOST + b"Accept: application/json\r\n",
        # The bad chunk comes 0.6 s after the head: the row's time counts from the request, not from the refusal.
        "malformed-body": b"POST /v1/embeddings HTTP/1.1\r\n" + json_head + b"Transfer-Encoding: chunked\r\n\r\n",
    }
    ids = {}
    for name, request_bytes in sent.items():
        later = [b"zz\r\n"] if name == "malformed-body" else []
        answers, _, _ = exchange(server, [request_bytes, *later], pause_s=0.6 if later else 0.0)
        assert error_of(answers[0], 400 if name.startswith("malformed") else 408)
        ids[name] = request_id_of(answers[0])
    assert ids["stalled-body"] == "stalled-7"  # the client's id comes back, and names the row
    # A body declared over the limit gets its 413; what the client still sends during the linger that
    # follows starts no read timeout (a second answer, a second row).
    too_large = b"POST /embed HTTP/1.1\r\n" + json_head + b"X-Request-ID: refused-9\r\nContent-Length: 99999999\r\n\r\n"
    answers, closed, _ = exchange(server, [too_large, b"x" * 1000])
    assert [head.split(b" ")[1] for head, _ in answers] == [b"413"] and closed, answers
    # A valid request, then one uvicorn refuses before making it a request of its own (a target with no
    # path): the refusal must not be logged under the valid one's route, nor take its row.
    answers, _, _ = exchange(server, [VALID + b"GET http://example.com HTTP/1.1\r\n" + HOST + b"\r\n"])
    assert answers[0][0].startswith(b"HTTP/1.1 200 "), answers
    # SIGTERM with a request whose head never finishes: the drain waits for it only until the read timeout
    # (its 408), not for the drain timeout, and the process exits 0, the log flushed before it does.
    with socket.create_connection(server.address, timeout=30) as conn:
        conn.sendall(b"POST /v1/embeddings HTTP/1.1\r\n" + HOST)  # and nothing more
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        exit_code = server.process.wait(DRAIN_TIMEOUT_S - 5)
        took_s = time.monotonic() - signalled
        unfinished = b""
        while chunk := conn.recv(65536):
            unfinished += chunk
    assert exit_code == 0, server.log()
    assert took_s < 10, (took_s, server.log())  # not the DRAIN_TIMEOUT_S of --drain-timeout
    assert unfinished.startswith(b"HTTP/1.1 408 "), unfinished[:300]
    ids["never-finished"] = request_id_of(split_answers(unfinished)[0])
    with sqlite3.connect(server.log_path.parent / "db.sqlite3") as db:
        query = "select endpoint, status, error_code, total_ms from vectors_requestlog where request_id = ?"
        rows = {name: db.execute(query, (request_id,)).fetchall() for name, request_id in ids.items()}
        gone = db.execute("select count(*) from vectors_requestlog where status = 499").fetchone()[0]
        refused = db.execute(
            "select endpoint, status from vectors_requestlog where request_id = 'refused-9'"
        ).fetchall()
        get_vector_400 = db.execute(
            "select count(*) from vectors_requestlog where endpoint = 'get_vector' and status = 400"
        ).fetchone()[0]
    assert [row[:3] for row in rows["stalled-body"]] == [("tei", 408, "request_timeout")], rows
    assert [row[:3] for row in rows["stalled-head"]] == [("get_vector", 408, "request_timeout")], rows
    assert [row[:3] for row in rows["stalled-first-header"]] == [("get_vector", 408, "request_timeout")], rows
    assert rows["stalled-other-route"] == [], rows  # only the embedding routes are logged, as for a 413
    assert [row[:3] for row in rows["malformed-body"]] == [("openai", 400, "malformed_http")], rows
    assert [row[:3] for row in rows["never-finished"]] == [("openai", 408, "request_timeout")], rows
    assert 500 <= rows["malformed-body"][0][3] < 3000, rows  # uvloop's clock counts whole ms
    took_ms = [row[3] for row in rows["stalled-body"] + rows["stalled-head"] + rows["stalled-first-header"]]
    assert all(READ_TIMEOUT_S * 1000 <= ms < (READ_TIMEOUT_S + 3) * 1000 for ms in took_ms), rows
    assert gone == 0, "a request the server answered itself was logged as a client that went away"
    assert get_vector_400 == 0, "a refusal was logged under the route of the request before it"
    assert refused == [("tei", 413)]
