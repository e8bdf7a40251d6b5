"""One request-log row per API request, with the status its client saw - disconnects (499) included."""

from __future__ import annotations

import asyncio
import threading

import httpx
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator
from django.test import AsyncClient

from vectors import conf
from vectors.engine.config import BatcherConfig
from vectors.engine.encoder import Encoder
from vectors.engine.registry import Registry
from vectors.models import RequestLog

# (method, path, body or query, status the client must see)
MIXED_LOAD = [
    ("POST", "/v1/embeddings", {"input": "a sentence"}, 200),
    ("POST", "/v1/embeddings", {"input": ["one", "two", "three"]}, 200),
    ("POST", "/embed", {"inputs": "tei style"}, 200),
    ("GET", "/get_vector", {"sentence": "write-up style"}, 200),
    ("POST", "/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}}, 200),
    ("POST", "/v1/embeddings", {"input": ""}, 400),
    ("POST", "/v1/embeddings", {"input": "x", "model": "no-such-model"}, 404),
    ("POST", "/embed", {"inputs": "word " * 600, "truncate": False}, 422),
    ("POST", "/v1/embeddings", b"{not json", 400),
    ("GET", "/get_vector", {}, 400),
]


async def send(client, method: str, path: str, payload: object):
    if method == "GET":
        return await client.get(path, payload)
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return await client.post(path, raw, content_type="application/json")


async def test_every_request_is_logged_once_with_the_status_its_client_saw(client, request_log):
    load = MIXED_LOAD * 3
    answers = await asyncio.gather(*(send(client, m, p, b) for m, p, b, _ in load))
    assert [a.status_code for a in answers] == [status for *_, status in load]
    entries = request_log.entries()
    assert len(entries) == len(load)
    seen = {a["x-request-id"]: a.status_code for a in answers}
    assert {e.request_id: e.status for e in entries} == seen
    for entry in entries:
        assert entry.caller, "the client address is recorded"
        assert entry.total_ms > 0
        if entry.status == 200:
            assert entry.model == "all-MiniLM-L6-v2" and entry.inputs >= 1 and entry.tokens >= 1
            assert entry.queue_ms is not None and entry.inference_ms is not None and entry.batch_size >= 1
        else:
            assert entry.error_code and entry.queue_ms is None and entry.batch_size is None
    assert {e.endpoint for e in entries} == {"openai", "tei", "get_vector", "similarity"}
    assert {e.error_code for e in entries if e.status == 404} == {"model_not_found"}


async def test_rows_reach_the_database_with_the_statuses_clients_saw(db_recorder):
    client = AsyncClient()
    load = MIXED_LOAD * 5
    answers = await asyncio.gather(*(send(client, m, p, b) for m, p, b, _ in load))
    assert db_recorder.flush(10)
    rows = {r.request_id: r.status async for r in RequestLog.objects.all()}
    assert len(rows) == len(load) == await RequestLog.objects.acount()
    assert rows == {a.headers["x-request-id"]: a.status_code for a in answers}


async def test_the_clients_request_id_names_the_row(request_log):
    answer = await AsyncClient().get("/get_vector", {"sentence": "hi"}, headers={"X-Request-ID": "trace-42"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "trace-42"
    (entry,) = request_log.entries()
    assert entry.request_id == "trace-42" and entry.endpoint == "get_vector"


async def get_vector(adapter: str, request_id: str, params: dict) -> tuple[int, str]:
    """GET /get_vector with the client's own X-Request-ID, through the DRF view or the full ASGI app."""
    headers = {"X-Request-ID": request_id}
    if adapter == "drf":
        answer = await AsyncClient().get("/get_vector", params, headers=headers)
        return answer.status_code, answer.headers["x-request-id"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=full_app()), base_url="http://testserver") as c:
        answer = await c.get("/get_vector", params=params, headers=headers)
        return answer.status_code, answer.headers["x-request-id"]


@pytest.mark.parametrize("adapter", ["drf", "asgi"])
async def test_requests_that_reuse_a_client_request_id_each_get_a_row(adapter, db_recorder):
    together = await asyncio.gather(*(get_vector(adapter, "retry-7", {"sentence": f"try {i}"}) for i in range(2)))
    assert db_recorder.flush(10)
    later = await get_vector(adapter, "retry-7", {})  # resent after its id is stored, and refused this time
    assert db_recorder.flush(10)
    assert sorted([*together, later]) == [(200, "retry-7"), (200, "retry-7"), (400, "retry-7")]
    rows = [row async for row in RequestLog.objects.filter(request_id="retry-7")]
    assert sorted(row.status for row in rows) == [200, 200, 400]
    assert await RequestLog.objects.acount() == 3 and len({row.entry_id for row in rows}) == 3


class GatedEncoder(Encoder):
    """The real model, held at a gate so a request can be abandoned while its batch runs."""

    entered = threading.Event()
    gate = threading.Event()

    def encode_counted(self, texts, threads=None):
        if "HOLD" in texts:
            GatedEncoder.entered.set()
            GatedEncoder.gate.wait(10)
        return super().encode_counted(texts, threads)


def gated_registry() -> Registry:
    base = conf.model_configs()[0]
    config = type(base)(**{**base.__dict__, "batcher": BatcherConfig(), "warmup": False})
    return Registry([config], make_encoder=GatedEncoder)


def django_app():
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def full_app():
    from embedservice.asgi import application

    return application


@pytest.mark.parametrize("make_app", [django_app, full_app], ids=["drf", "asgi"])
async def test_a_client_that_disconnects_is_logged_as_499(make_app, registry_override, request_log):
    registry_override(gated_registry())
    GatedEncoder.entered.clear()
    GatedEncoder.gate.clear()
    body = orjson.dumps({"input": "HOLD"})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/embeddings",
        "raw_path": b"/v1/embeddings",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("10.1.2.3", 5000),
        "server": ("testserver", 80),
    }
    app = ApplicationCommunicator(make_app(), scope)
    try:
        await app.send_input({"type": "http.request", "body": body, "more_body": False})
        for _ in range(200):
            if GatedEncoder.entered.is_set():
                break
            await asyncio.sleep(0.05)
        assert GatedEncoder.entered.is_set(), "the request never reached the model"
        await app.send_input({"type": "http.disconnect"})
        for _ in range(100):
            if request_log.buffered or request_log.written:
                break
            await asyncio.sleep(0.05)
    finally:
        GatedEncoder.gate.set()
        await app.wait(5)
    (entry,) = request_log.entries()
    assert entry.status == 499 and entry.error_code == "client_closed"
    assert entry.endpoint == "openai" and entry.caller == "10.1.2.3"
    assert entry.total_ms > 0
