"""End to end over WebSocket: a real `manage.py serve` process, real `websockets` clients, the real model."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.conftest import cosines

pytestmark = pytest.mark.e2e

CLIENTS = 100
IN_FLIGHT = 8
PER_CLIENT = 16
CORPUS = [
    f"{topic} number {i}: a short sentence a Java system streams for its vector"
    for i in range(60)
    for topic in ("weather", "invoices", "天气预报", "logistics")
]


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/ws/embed/"


def text_for(client: int, seq: int) -> str:
    # Neighbouring ids get different texts, so an answer under the wrong id cannot pass.
    return CORPUS[(client * 37 + seq * 11) % len(CORPUS)]


async def keep_in_flight(url: str, client: int) -> dict[str, list[float]]:
    """Send PER_CLIENT frames keeping IN_FLIGHT unanswered; return the vectors by id."""
    answers: dict[str, list[float]] = {}
    async with connect(url, max_size=2**22, open_timeout=60) as socket:
        sent = 0

        async def send_next() -> None:
            nonlocal sent
            await socket.send(orjson.dumps({"id": f"c{client}-{sent}", "input": text_for(client, sent)}).decode())
            sent += 1

        for _ in range(IN_FLIGHT):
            await send_next()
        while len(answers) < PER_CLIENT:
            reply = orjson.loads(await asyncio.wait_for(socket.recv(), 120))
            assert "error" not in reply, reply
            assert reply["id"] not in answers, f"answered twice: {reply['id']}"
            answers[reply["id"]] = reply["embeddings"][0]
            if sent < PER_CLIENT:
                await send_next()
    return answers


async def test_100_clients_with_8_in_flight_each_get_correct_vectors_under_their_ids(embed_server, reference):
    url = ws_url(embed_server.url)
    results = await asyncio.gather(*(keep_in_flight(url, c) for c in range(CLIENTS)))
    expected = dict(zip(CORPUS, reference.encode(CORPUS), strict=True))
    for client, answers in enumerate(results):
        assert sorted(answers) == sorted(f"c{client}-{seq}" for seq in range(PER_CLIENT))
        got = np.array([answers[f"c{client}-{seq}"] for seq in range(PER_CLIENT)])
        want = np.array([expected[text_for(client, seq)] for seq in range(PER_CLIENT)])
        assert cosines(got, want).min() >= 0.9999, f"client {client} got a vector that is not its own"
    assert "Traceback" not in embed_server.log()


async def test_live_socket_answers_base64_and_survives_a_bad_frame(embed_server, reference):
    async with connect(ws_url(embed_server.url), open_timeout=60) as socket:
        await socket.send("this is not JSON")
        bad = orjson.loads(await asyncio.wait_for(socket.recv(), 60))
        assert bad["id"] is None and bad["status"] == 400 and bad["error"]["code"] == "invalid_json"
        await socket.send(b"\x00binary")
        binary = orjson.loads(await asyncio.wait_for(socket.recv(), 60))
        assert binary["error"]["code"] == "binary_frame"
        texts = ["base64 over a real socket", "向量服务"]
        await socket.send(orjson.dumps({"id": 1, "input": texts, "encoding_format": "base64"}).decode())
        reply = orjson.loads(await asyncio.wait_for(socket.recv(), 60))
    got = np.array([np.frombuffer(base64.b64decode(item), dtype="<f4") for item in reply["embeddings"]])
    assert reply["id"] == 1
    assert cosines(got, reference.encode(texts)).min() >= 0.9999


async def test_live_handshake_from_a_foreign_origin_is_refused(embed_server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(embed_server.url), origin="https://evil.example", open_timeout=60):
            pass
    assert refused.value.response.status_code == 403


async def test_a_frame_over_a_mib_is_answered_and_one_over_the_body_limit_gets_413_on_an_open_socket(
    embed_server, reference
):
    from vectors import conf

    limit = conf.limits().max_body_bytes
    async with connect(ws_url(embed_server.url), max_size=2**22, open_timeout=60) as socket:
        # Fields the protocol does not know are ignored; they only make the frame big (daphne's own limit
        # of 1 MiB dropped the connection here).
        await socket.send(orjson.dumps({"id": "big", "input": "a large frame", "pad": "x" * (3 << 19)}).decode())
        reply = orjson.loads(await asyncio.wait_for(socket.recv(), 60))
        assert reply["id"] == "big" and "error" not in reply, reply
        assert cosines(np.array(reply["embeddings"]), reference.encode(["a large frame"])).min() >= 0.9999
        await socket.send(orjson.dumps({"id": "huge", "input": "x", "pad": "x" * (limit + 1)}).decode())
        reply = orjson.loads(await asyncio.wait_for(socket.recv(), 60))
        assert reply["status"] == 413 and reply["error"]["code"] == "payload_too_large", reply
        await socket.send(orjson.dumps({"id": "after", "input": "still open"}).decode())
        reply = orjson.loads(await asyncio.wait_for(socket.recv(), 60))
        assert reply["id"] == "after" and "error" not in reply


@pytest.mark.parametrize("path", ["/ws/embed", "/ws/nope/", "/v1/embeddings"])
async def test_the_stream_is_served_without_its_slash_and_other_paths_are_refused(embed_server, path):
    from websockets.exceptions import InvalidStatus

    url = embed_server.url.replace("http://", "ws://", 1) + path
    if path == "/ws/embed":
        async with connect(url, open_timeout=60) as socket:
            await socket.send(orjson.dumps({"id": 1, "input": "no trailing slash"}).decode())
            assert "error" not in orjson.loads(await asyncio.wait_for(socket.recv(), 60))
        return
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=60):
            pass
    assert refused.value.response.status_code == 403
