"""The ws/embed/ consumer through the real ASGI application: frames, errors, in-flight limit, API keys."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sys
import types

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator

from embedservice.asgi import application
from tests.conftest import cosines
from vectors import conf, consumers
from vectors.api.errors import Unauthorized

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings turn text into vectors.",
    "今天天气很好，我们去公园散步吧。",
    "A Java system calls this service over a WebSocket.",
    "short",
]
WAIT_S = 30


async def connected(headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, "/ws/embed/", headers=headers or [])
    ok, _ = await socket.connect(timeout=WAIT_S)
    assert ok
    return socket


async def answer(socket: WebsocketCommunicator) -> dict:
    return await socket.receive_json_from(timeout=WAIT_S)


async def assert_still_serves(socket: WebsocketCommunicator, reference) -> None:
    await socket.send_json_to({"id": "after", "input": "still open"})
    reply = await answer(socket)
    assert reply["id"] == "after"
    assert cosines(np.array(reply["embeddings"]), reference.encode(["still open"])).min() >= 0.9999


async def test_frame_with_a_list_is_answered_with_sentence_transformers_vectors(reference):
    socket = await connected()
    await socket.send_json_to({"id": 7, "input": TEXTS, "model": "all-MiniLM-L6-v2"})
    reply = await answer(socket)
    await socket.disconnect()
    assert reply["id"] == 7 and reply["model"] == "all-MiniLM-L6-v2"
    got = np.array(reply["embeddings"])
    assert got.shape == (len(TEXTS), 384)
    assert cosines(got, reference.encode(TEXTS)).min() >= 0.9999
    tokens = sum(len(ids) for ids in reference.tokenizer(TEXTS)["input_ids"])
    assert reply["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert reply["timing"]["total_ms"] >= reply["timing"]["queue_ms"] >= 0


async def test_frame_with_one_string_gets_one_vector(reference):
    socket = await connected()
    await socket.send_json_to({"id": "one", "input": TEXTS[2]})
    reply = await answer(socket)
    await socket.disconnect()
    assert len(reply["embeddings"]) == 1
    assert cosines(np.array(reply["embeddings"]), reference.encode(TEXTS[2:3])).min() >= 0.9999


async def test_base64_frame_decodes_to_little_endian_float32_vectors(reference):
    socket = await connected()
    await socket.send_json_to({"id": "b", "input": TEXTS, "encoding_format": "base64"})
    reply = await answer(socket)
    await socket.disconnect()
    got = np.array([np.frombuffer(base64.b64decode(item), dtype="<f4") for item in reply["embeddings"]])
    assert cosines(got, reference.encode(TEXTS)).min() >= 0.9999


async def test_dimensions_cut_and_renormalise_the_vectors(reference):
    socket = await connected()
    await socket.send_json_to({"id": "d", "input": TEXTS, "dimensions": 64})
    reply = await answer(socket)
    await socket.disconnect()
    got = np.array(reply["embeddings"])
    assert got.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    assert cosines(got, reference.encode(TEXTS)[:, :64]).min() >= 0.9999


async def test_many_frames_in_flight_are_each_answered_under_their_own_id(reference):
    texts = [f"sentence number {i} about {TEXTS[i % len(TEXTS)]}" for i in range(24)]
    socket = await connected()
    for i, text in enumerate(texts):
        await socket.send_json_to({"id": f"m{i}", "input": text})
    replies = [await answer(socket) for _ in texts]
    await socket.disconnect()
    by_id = {reply["id"]: reply["embeddings"][0] for reply in replies}
    assert sorted(by_id) == sorted(f"m{i}" for i in range(len(texts)))
    got = np.array([by_id[f"m{i}"] for i in range(len(texts))])
    assert cosines(got, reference.encode(texts)).min() >= 0.9999


BAD_FRAMES = [
    pytest.param({"text": "{not json"}, None, 400, "invalid_json", None, id="not-json"),
    pytest.param({"text": ""}, None, 400, "invalid_json", None, id="empty-text"),
    pytest.param({"bytes": b"\x00\x01"}, None, 400, "binary_frame", None, id="binary"),
    pytest.param({"text": "[1, 2]"}, None, 400, "invalid_request", None, id="not-an-object"),
    pytest.param({"json": {"input": "x"}}, None, 400, "invalid_request", "id", id="missing-id"),
    pytest.param({"json": {"id": {"a": 1}, "input": "x"}}, None, 400, "invalid_request", "id", id="id-object"),
    pytest.param({"json": {"id": True, "input": "x"}}, True, 400, "invalid_request", "id", id="id-bool"),
    pytest.param(
        {"text": '{"id": 1180591620717411303424, "input": "x"}'}, 2.0**70, 400, "invalid_request", "id", id="id-2**70"
    ),
    pytest.param({"json": {"id": 1}}, 1, 400, "invalid_request", "input", id="missing-input"),
    pytest.param({"json": {"id": 2, "input": 5}}, 2, 400, "invalid_request", "input", id="input-number"),
    pytest.param({"json": {"id": 3, "input": []}}, 3, 400, "invalid_request", "input", id="input-empty-list"),
    pytest.param({"json": {"id": 4, "input": "   "}}, 4, 400, "invalid_request", "input", id="input-blank"),
    pytest.param({"json": {"id": 5, "input": ["a", 1]}}, 5, 400, "invalid_request", "input", id="input-mixed"),
    pytest.param(
        {"json": {"id": 6, "input": "x", "encoding_format": "int8"}},
        6,
        400,
        "invalid_request",
        "encoding_format",
        id="encoding-format",
    ),
    pytest.param(
        {"json": {"id": 7, "input": "x", "dimensions": "64"}}, 7, 400, "invalid_request", "dimensions", id="dims-str"
    ),
    pytest.param(
        {"json": {"id": 8, "input": "x", "dimensions": 999}}, 8, 400, "invalid_request", "dimensions", id="dims-big"
    ),
    pytest.param(
        {"json": {"id": 9, "input": "x", "model": "no-such-model"}}, 9, 404, "model_not_found", "model", id="model"
    ),
    pytest.param({"json": {"id": 10, "type": "ping"}}, 10, 400, "invalid_request", "type", id="unknown-type"),
]


@pytest.mark.parametrize(("send", "echoed", "status", "code", "param"), BAD_FRAMES)
async def test_bad_frame_gets_an_error_frame_and_the_socket_stays_open(reference, send, echoed, status, code, param):
    socket = await connected()
    if "json" in send:
        await socket.send_json_to(send["json"])
    else:
        await socket.send_input({"type": "websocket.receive", **send})
    reply = await answer(socket)
    assert reply["id"] == echoed
    assert reply["status"] == status
    assert reply["error"]["code"] == code
    assert reply["error"]["param"] == param
    assert set(reply["error"]) == {"message", "type", "param", "code"} and reply["error"]["message"]
    if isinstance(echoed, float):  # orjson reads an integer past 64 bits as a float: the message says so
        assert reply["error"]["message"] == "id: an integer id must fit in 64 bits; send a larger one as a string"
    await assert_still_serves(socket, reference)
    await socket.disconnect()


@pytest.fixture
def stalled_core(monkeypatch):
    """Replace the core with one that waits until released (or is cancelled), counting both."""
    state = types.SimpleNamespace(release=asyncio.Event(), started=0, cancelled=0)

    async def embed(job):
        state.started += 1
        try:
            await state.release.wait()
        except asyncio.CancelledError:
            state.cancelled += 1
            raise
        return await real(job)

    real = consumers.core.embed
    monkeypatch.setattr(consumers.core, "embed", embed)
    return state


@pytest.fixture
def inflight_limit(monkeypatch):
    def install(limit: int) -> None:
        limits = dataclasses.replace(conf.limits(), ws_max_inflight=limit)
        monkeypatch.setattr(conf, "limits", lambda: limits)

    return install


async def test_frames_over_the_in_flight_limit_get_too_many_in_flight(stalled_core, inflight_limit):
    inflight_limit(3)
    socket = await connected()
    for i in range(4):
        await socket.send_json_to({"id": i, "input": f"text {i}"})
    refused = await answer(socket)
    assert refused["id"] == 3 and refused["status"] == 429
    assert refused["error"]["code"] == "too_many_in_flight" and refused["error"]["type"] == "rate_limit_error"
    stalled_core.release.set()
    answered = sorted([(await answer(socket))["id"] for _ in range(3)])
    assert answered == [0, 1, 2]
    await socket.send_json_to({"id": "later", "input": "room again"})
    assert (await answer(socket))["id"] == "later"
    await socket.disconnect()


async def test_disconnect_cancels_the_requests_still_in_flight(stalled_core):
    socket = await connected()
    for i in range(5):
        await socket.send_json_to({"id": i, "input": f"text {i}"})
    while stalled_core.started < 5:
        await asyncio.sleep(0.01)
    await socket.disconnect()
    assert stalled_core.cancelled == 5


# -- API keys ------------------------------------------------------------------------------


@pytest.fixture
def keys_required(monkeypatch):
    """Install a vectors.auth that requires the key "good-key" (the other module's contract)."""
    import vectors

    module = types.ModuleType("vectors.auth")

    def check_api_key(raw: str | None, *, charge: bool = True) -> str | None:
        if raw is None:
            raise Unauthorized("missing API key")
        if raw != "good-key":
            raise Unauthorized("invalid API key")
        return "svc-a"

    module.check_api_key = check_api_key
    monkeypatch.setitem(sys.modules, "vectors.auth", module)
    monkeypatch.setattr(vectors, "auth", module, raising=False)


async def test_no_key_is_needed_while_keys_are_not_required():
    assert await consumers.check_api_key(None) is None


async def test_key_in_the_authorization_header_is_accepted(keys_required, reference):
    socket = await connected([(b"authorization", b"Bearer good-key")])
    await assert_still_serves(socket, reference)
    await socket.disconnect()


async def test_wrong_key_in_the_header_gets_401_and_the_socket_closes(keys_required):
    socket = await connected([(b"authorization", b"Bearer bad-key")])
    reply = await answer(socket)
    assert reply["status"] == 401 and reply["error"]["code"] == "invalid_api_key"
    assert "bad-key" not in reply["error"]["message"]
    closed = await socket.receive_output(timeout=WAIT_S)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHORIZED}


async def test_without_a_key_frames_get_401_until_an_auth_frame_arrives(keys_required, reference):
    socket = await connected()
    await socket.send_json_to({"id": 1, "input": "no key yet"})
    refused = await answer(socket)
    assert refused["id"] == 1 and refused["status"] == 401
    await socket.send_json_to({"type": "auth", "api_key": "good-key", "id": "a"})
    assert await answer(socket) == {"id": "a", "type": "auth", "authenticated": True}
    await assert_still_serves(socket, reference)
    await socket.disconnect()


async def test_wrong_key_in_an_auth_frame_gets_401_and_the_socket_closes(keys_required):
    socket = await connected()
    await socket.send_json_to({"type": "auth", "api_key": "bad-key"})
    reply = await answer(socket)
    assert reply["status"] == 401 and reply["error"]["type"] == "authentication_error"
    closed = await socket.receive_output(timeout=WAIT_S)
    assert closed["type"] == "websocket.close" and closed["code"] == consumers.CLOSE_UNAUTHORIZED


async def test_frames_over_the_keys_rate_get_429_with_retry_after(keys_required, monkeypatch, reference):
    import vectors
    from vectors.api.errors import Overloaded

    taken = []
    module = types.ModuleType("vectors.ratelimit")

    def check_rate(name: str) -> None:
        taken.append(name)
        if len(taken) > 1:
            err = Overloaded(f"API key {name!r} is over its rate", code="rate_limited")
            err.retry_after_s = 2
            raise err

    module.check_rate = check_rate
    monkeypatch.setitem(sys.modules, "vectors.ratelimit", module)
    monkeypatch.setattr(vectors, "ratelimit", module, raising=False)
    socket = await connected([(b"authorization", b"Bearer good-key")])
    await socket.send_json_to({"id": 1, "input": "first"})
    assert "embeddings" in await answer(socket)
    await socket.send_json_to({"id": 2, "input": "second"})
    refused = await answer(socket)
    await socket.disconnect()
    assert refused["id"] == 2 and refused["status"] == 429 and refused["retry_after_s"] == 2
    assert refused["error"]["code"] == "rate_limited" and taken == ["svc-a", "svc-a"]


@pytest.mark.django_db(transaction=True)
async def test_real_api_keys_are_checked_in_the_handshake_and_in_an_auth_frame(monkeypatch, reference):
    from asgiref.sync import sync_to_async
    from rest_framework_api_key.models import APIKey

    from vectors import auth

    limits = dataclasses.replace(conf.limits(), require_api_key=True)
    monkeypatch.setattr(conf, "limits", lambda: limits)
    auth.forget_keys()
    _, key = await sync_to_async(APIKey.objects.create_key)(name="java-batch")

    by_header = await connected([(b"authorization", f"Bearer {key}".encode())])
    await assert_still_serves(by_header, reference)
    await by_header.disconnect()

    by_frame = await connected()
    await by_frame.send_json_to({"id": 1, "input": "no key yet"})
    assert (await answer(by_frame))["status"] == 401
    await by_frame.send_json_to({"type": "auth", "api_key": key})
    assert (await answer(by_frame))["authenticated"] is True
    await assert_still_serves(by_frame, reference)
    await by_frame.disconnect()

    wrong = await connected([(b"authorization", b"Bearer not-a-key")])
    assert (await answer(wrong))["status"] == 401
    assert (await wrong.receive_output(timeout=WAIT_S))["code"] == consumers.CLOSE_UNAUTHORIZED
    auth.forget_keys()


@pytest.mark.django_db(transaction=True)
async def test_the_handshake_takes_nothing_from_the_keys_rate_and_a_throttled_socket_stays_open(monkeypatch, reference):
    from asgiref.sync import sync_to_async
    from rest_framework_api_key.models import APIKey

    from vectors import auth, ratelimit

    limits = dataclasses.replace(conf.limits(), require_api_key=True, rate_limit_per_key=0.01, rate_limit_burst=1)
    monkeypatch.setattr(conf, "limits", lambda: limits)
    auth.forget_keys()
    ratelimit.reset()
    _, key = await sync_to_async(APIKey.objects.create_key)(name="java-stream")
    try:
        socket = await connected([(b"authorization", f"Bearer {key}".encode())])
        await socket.send_json_to({"id": 1, "input": "the one request the burst allows"})
        first = await answer(socket)
        assert first["id"] == 1 and "embeddings" in first, first  # the handshake did not spend it
        await socket.send_json_to({"id": 2, "input": "one too many"})
        refused = await answer(socket)
        assert refused["status"] == 429 and refused["error"]["code"] == "rate_limited" and refused["retry_after_s"] >= 1
        await socket.send_json_to({"type": "auth", "api_key": key, "id": "again"})
        assert await answer(socket) == {"id": "again", "type": "auth", "authenticated": True}  # not charged either
        assert await socket.receive_nothing(timeout=0.5)  # still open: a throttled key is not a wrong one
        await socket.disconnect()
    finally:
        auth.forget_keys()
        ratelimit.reset()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("by_frame", [False, True], ids=["handshake", "auth frame"])
async def test_a_key_the_key_store_cannot_check_now_closes_with_try_again_not_unauthorized(monkeypatch, by_frame):
    from django.db import OperationalError
    from rest_framework_api_key.models import APIKey

    from vectors import auth

    limits = dataclasses.replace(conf.limits(), require_api_key=True)
    monkeypatch.setattr(conf, "limits", lambda: limits)
    auth.forget_keys()

    def down(manager: object, key: str) -> None:
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(type(APIKey.objects), "get_from_key", down)
    try:
        if by_frame:
            socket = await connected()
            await socket.send_json_to({"type": "auth", "api_key": "never-seen-before", "id": "k"})
        else:
            socket = await connected([(b"authorization", b"Bearer never-seen-before")])
        refused = await answer(socket)
        assert refused["status"] == 503 and refused["error"]["code"] == "key_store_unavailable"
        assert refused["retry_after_s"] >= 1 and refused["id"] == ("k" if by_frame else None)
        closed = await socket.receive_output(timeout=WAIT_S)
        assert closed == {"type": "websocket.close", "code": consumers.CLOSE_TRY_AGAIN}
    finally:
        auth.forget_keys()


# -- Origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [(None, True), (b"http://localhost:8000", True), (b"http://127.0.0.1", True), (b"https://evil.example", False)],
)
async def test_handshake_from_a_foreign_browser_origin_is_refused(origin, accepted):
    headers = [(b"origin", origin)] if origin else []
    socket = WebsocketCommunicator(application, "/ws/embed/", headers=headers)
    ok, _ = await socket.connect(timeout=WAIT_S)
    assert ok is accepted
    await socket.disconnect()


# -- accounting ----------------------------------------------------------------------------


async def test_each_message_is_accounted_like_an_http_request(monkeypatch):
    calls = []
    monkeypatch.setattr(consumers.accounting, "account", lambda **row: calls.append(row))
    socket = await connected()
    await socket.send_json_to({"id": 1, "input": ["one", "two"]})
    await answer(socket)
    await socket.send_json_to({"id": 2, "input": 3})
    await answer(socket)
    await socket.disconnect()
    good, bad = calls
    assert good["endpoint"] == bad["endpoint"] == "ws"
    assert good["status"] == 200 and good["outcome"].model == "all-MiniLM-L6-v2" and good["inputs"] == 2
    assert bad["status"] == 400 and bad["error_code"] == "invalid_request" and bad["outcome"] is None
    assert good["request_id"] != bad["request_id"] and good["total_ms"] > 0


async def test_an_answer_whose_connection_dropped_as_it_was_sent_is_still_logged_as_client_gone(monkeypatch, caplog):
    from uvicorn.protocols.utils import ClientDisconnected

    calls = []
    monkeypatch.setattr(consumers.accounting, "account", lambda **row: calls.append(row))
    send_json = consumers.EmbedConsumer.send_json

    async def dropped_on_answers(self, content, close=False):
        if "embeddings" in content:  # what uvicorn raises once the connection is lost
            raise ClientDisconnected()
        await send_json(self, content, close)

    monkeypatch.setattr(consumers.EmbedConsumer, "send_json", dropped_on_answers)
    socket = await connected()
    await socket.send_json_to({"id": 1, "input": ["one", "two"]})
    for _ in range(WAIT_S * 100):
        if calls:
            break
        await asyncio.sleep(0.01)
    await socket.disconnect()
    (row,) = calls
    assert row["status"] == consumers.STATUS_CLIENT_GONE and row["error_code"] == "client_closed"
    assert row["outcome"] is not None and row["inputs"] == 2  # the work was done: its timings stay in the row
    assert "WebSocket request task failed" not in caplog.text


async def test_the_frame_limit_counts_utf8_bytes_not_characters():
    from django.conf import settings
    from django.test import override_settings

    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "MAX_BODY_BYTES": 1000}):
        socket = await connected()
        wide = '{"id": 1, "input": "' + "天" * 400 + '"}'  # 422 characters, 1222 bytes
        await socket.send_to(text_data=wide)
        reply = await answer(socket)
        assert reply["error"]["code"] == "payload_too_large"
        await socket.send_to(text_data='{"id": 2, "input": "' + "天" * 300 + '"}')  # 322 characters, 922 bytes
        reply = await answer(socket)
        assert reply["id"] == 2 and len(reply["embeddings"][0]) == 384
        await socket.disconnect()


@pytest.mark.parametrize("path", ["/ws/embed", "/ws/embed/"])
async def test_the_stream_answers_with_or_without_the_trailing_slash(path, reference):
    socket = WebsocketCommunicator(application, path)
    ok, _ = await socket.connect(timeout=WAIT_S)
    assert ok
    await assert_still_serves(socket, reference)
    await socket.disconnect()


@pytest.mark.parametrize("path", ["/v1/embeddings", "/ws/nope/", "/"])
async def test_a_handshake_on_a_path_without_a_stream_is_refused_not_failed(path, caplog):
    socket = WebsocketCommunicator(application, path)
    ok, code = await socket.connect(timeout=WAIT_S)
    assert not ok and code == 1000  # closed before accept: the server answers the handshake 403
    assert "No route found" not in caplog.text and "Traceback" not in caplog.text
