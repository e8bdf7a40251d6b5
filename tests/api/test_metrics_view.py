"""GET /metrics through the full ASGI app: Prometheus text, and the API's 405 for any other method."""

from __future__ import annotations

import httpx
import pytest


def app_client() -> httpx.AsyncClient:
    from embedservice.asgi import application

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver")


async def test_get_answers_prometheus_text():
    async with app_client() as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert "embed_" in answer.text


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "TRACE", "FOO"])
async def test_any_other_method_gets_a_json_405_not_the_csrf_page(method):
    async with app_client() as client:
        answer = await client.request(method, "/metrics", content=b"x=1")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD"
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert method in answer.json()["error"]["message"]
