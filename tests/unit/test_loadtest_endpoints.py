"""Each endpoint's client: the request it sends, and how answers and failures become Replies."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from vectors.loadtest import endpoints
from vectors.loadtest.client import CONNECT_ERROR, TIMEOUT, HttpSession, Reply, connection, reply_from


def session_for(name: str, handler, connections: int = 4) -> HttpSession:
    session = endpoints.get(name).open("http://127.0.0.1:9", connections, 5.0)
    assert isinstance(session, HttpSession)
    session.transport = httpx.MockTransport(handler)
    return session


def recording(seen: list, status: int = 200, headers: dict | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={}, headers=headers or {})

    return handler


@pytest.mark.parametrize(
    ("name", "texts", "body"),
    [
        ("openai-float", ["one"], {"input": "one", "encoding_format": "float"}),
        ("openai-base64", ["one", "two"], {"input": ["one", "two"], "encoding_format": "base64"}),
        ("tei", ["one"], {"inputs": "one"}),
        ("tei", ["one", "two"], {"inputs": ["one", "two"]}),
    ],
)
async def test_post_endpoints_send_their_contracts_json_body(name, texts, body):
    seen: list[httpx.Request] = []
    await session_for(name, recording(seen)).call(texts)
    assert seen[0].method == "POST"
    assert seen[0].headers["content-type"] == "application/json"
    assert orjson.loads(seen[0].content) == body


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("get_vector", "/get_vector"),
        ("bench-sync", "/bench/get_vector_sync"),
        ("bench-async", "/bench/get_vector_async"),
    ],
)
async def test_get_endpoints_send_the_sentence_as_a_query_parameter(name, path):
    seen: list[httpx.Request] = []
    await session_for(name, recording(seen)).call(["今天 天气&很好"])
    assert seen[0].method == "GET"
    assert seen[0].url.path == path
    assert seen[0].url.params["sentence"] == "今天 天气&很好"


def test_single_sentence_endpoints_say_so_and_baselines_need_bench_views():
    assert endpoints.get("get_vector").max_inputs == 1
    assert endpoints.get("openai-float").max_inputs is None
    assert endpoints.get("bench-sync").needs_bench_views
    assert not endpoints.get("get_vector").needs_bench_views


def test_a_new_endpoint_can_be_registered_without_touching_the_others():
    class FakeSession:
        async def call(self, texts):
            return Reply(200)

        async def aclose(self):
            pass

    try:
        endpoints.register(endpoints.Endpoint("ws-test", "a WebSocket", lambda url, n, t: FakeSession()))
        assert endpoints.get("ws-test").description == "a WebSocket"
    finally:
        endpoints.ENDPOINTS.pop("ws-test", None)


async def test_timing_headers_become_the_replys_server_split():
    headers = {"x-queue-time": "1.50", "x-inference-time": "12.25", "x-batch-size": "32"}
    reply = await session_for("get_vector", recording([], headers=headers)).call(["x"])
    assert reply == Reply(200, None, 1.5, 12.25, 32)


def test_missing_or_garbled_timing_headers_are_unknown_not_errors():
    reply = reply_from(httpx.Response(429, headers={"x-queue-time": "soon"}))
    assert reply == Reply(429)


async def test_a_timeout_and_a_refused_connection_are_replies_without_status():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    assert await session_for("tei", timeout).call(["x"]) == Reply(None, TIMEOUT)
    assert await session_for("tei", refused).call(["x"]) == Reply(None, CONNECT_ERROR)


async def test_a_session_opens_at_most_its_connections_and_reuses_them():
    in_flight, most = 0, 0

    async def handler(request):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200)

    session = session_for("get_vector", handler, connections=3)
    replies = await asyncio.gather(*(session.call(["x"]) for _ in range(12)))
    assert [r.status for r in replies] == [200] * 12
    assert most == 3
    assert len(session.opened) == 3
    await session.call(["again"])
    assert len(session.opened) == 3
    await session.aclose()


async def test_each_connection_is_a_single_keep_alive_client_that_ignores_proxies():
    client = connection("http://127.0.0.1:9", 7.0)
    try:
        pool = client._transport._pool
        assert pool._max_connections == 1
        assert pool._keepalive_expiry is None
        assert client.timeout.read == 7.0
        assert client._trust_env is False
    finally:
        await client.aclose()


def test_the_open_file_limit_is_raised_to_fit_the_connections():
    import resource

    from vectors.loadtest.client import allow_open_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        allow_open_files(1000)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(1064, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
