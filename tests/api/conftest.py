"""Every API test runs twice: through the DRF views and through the full ASGI app (lean route in front)."""

from __future__ import annotations

import httpx
import pytest
from django.test import AsyncClient


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
