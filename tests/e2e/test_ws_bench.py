"""The load generator's WebSocket session against a real server: frames multiplexed over few sockets."""

from __future__ import annotations

import asyncio

import pytest

from vectors.loadtest.websocket import WsSession, ws, ws_url

pytestmark = pytest.mark.e2e


def test_ws_url_follows_the_http_scheme():
    assert ws_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/ws/embed/"
    assert ws_url("https://embed.example") == "wss://embed.example/ws/embed/"


def test_one_socket_serves_each_group_of_clients():
    assert len(ws(8)("http://127.0.0.1:1", 100, 5.0).sockets) == 13
    assert len(ws(1)("http://127.0.0.1:1", 3, 5.0).sockets) == 3


async def test_session_multiplexes_many_calls_over_two_sockets(embed_server):
    session = WsSession(embed_server.url, 2, 60)
    try:
        replies = await asyncio.gather(*(session.call([f"bench sentence {i}"]) for i in range(40)))
        refused = await session.call([" "])
    finally:
        await session.aclose()
    assert [r.status for r in replies] == [200] * 40
    assert all(r.batch_size >= 1 and r.queue_ms is not None and r.inference_ms > 0 for r in replies)
    assert max(r.batch_size for r in replies) > 1
    assert refused.status == 400


async def test_session_reports_connect_errors_without_raising():
    session = WsSession("http://127.0.0.1:9", 1, 5)
    reply = await session.call(["nobody listens"])
    await session.aclose()
    assert reply.status is None and reply.error == "connect_error"


def test_benchmark_offers_both_websocket_endpoints():
    from vectors.loadtest import endpoints

    assert endpoints.get("ws").max_inputs is None
    assert len(endpoints.get("ws-8").open("http://127.0.0.1:1", 64, 5.0).sockets) == 8
