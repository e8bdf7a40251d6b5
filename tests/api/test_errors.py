"""The error table's answers always render, whatever the request echoed into them."""

from __future__ import annotations

import orjson

from vectors.api.errors import InvalidRequest


async def test_a_lone_surrogate_echoed_in_an_error_is_escaped_not_a_500(client):
    response = await client.post("/v1/embeddings", b'{"input": "x", "encoding_format": "\\ud800"}')
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == "encoding_format"
    assert "\\ud800" in error["message"]


def test_envelope_with_lone_surrogates_serialises():
    envelope = InvalidRequest("bad \ud800 value", param="field\udc00").envelope()
    assert orjson.loads(orjson.dumps(envelope))["error"] == {
        "message": "bad \\ud800 value",
        "type": "invalid_request_error",
        "param": "field\\udc00",
        "code": "invalid_request",
    }


async def test_content_negotiation_failures_are_json_errors_not_500s():
    from django.test import AsyncClient

    django_client = AsyncClient()
    r = await django_client.get("/v1/models", {"format": "xml"})  # DRF: no renderer for ?format= -> Http404
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found" and "format=json" in r.json()["error"]["message"]
    r = await django_client.get("/v1/models", headers={"Accept": "application/xml"})  # DRF: NotAcceptable
    assert r.status_code == 406
    assert r.json()["error"]["code"] == "not_acceptable"
    assert "application/json" in r.json()["error"]["message"]
