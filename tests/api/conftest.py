"""Every API test runs twice: through the DRF views and through the full ASGI app (lean route in front)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.conf import settings
from django.test import AsyncClient, override_settings


class Answer:
    """A response with one surface for both clients: status_code, json(), content, answer["header"]."""

    def __init__(self, status_code: int, content: bytes, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.content = content
        self.headers = {k.lower(): v for k, v in headers.items()}

    def json(self):
        import orjson

        return orjson.loads(self.content)

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]


class DrfClient:
    def __init__(self) -> None:
        self.client = AsyncClient()

    async def get(self, path: str, params: dict | None = None) -> Answer:
        r = await self.client.get(path, params or {})
        return Answer(r.status_code, r.content, dict(r.headers))

    async def post(self, path: str, raw: bytes, content_type: str = "application/json") -> Answer:
        r = await self.client.post(path, raw, content_type=content_type)
        return Answer(r.status_code, r.content, dict(r.headers))


class AsgiClient:
    def __init__(self) -> None:
        from embedservice.asgi import application

        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver")

    async def get(self, path: str, params: dict | None = None) -> Answer:
        r = await self.client.get(path, params=params)
        return Answer(r.status_code, r.content, dict(r.headers))

    async def post(self, path: str, raw: bytes, content_type: str = "application/json") -> Answer:
        r = await self.client.post(path, content=raw, headers={"content-type": content_type})
        return Answer(r.status_code, r.content, dict(r.headers))


@pytest.fixture(params=["drf", "asgi"])
def client(request):
    return DrfClient() if request.param == "drf" else AsgiClient()


@pytest.fixture(params=[True, False], ids=["fast", "drf"])
def fast_path(request):
    """The full ASGI app with EMBED_FAST_PATH on (the lean route answers) or off (the DRF views answer)."""
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "FAST_PATH": request.param}):
        yield request.param


async def send_raw(
    path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]], method: str = "POST", query: bytes = b""
) -> Answer:
    """Send one request through the full ASGI app with exactly these headers, one http.request per chunk.

    No client library in between: a body in several chunks with no Content-Length (Transfer-Encoding:
    chunked) or a request with no Content-Type arrives as a server would hand it over.
    """
    from embedservice.asgi import application

    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    answered = asyncio.Event()
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await answered.wait()  # the client stays until its answer is complete, then leaves
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], body, {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]})
