"""The lean ASGI route answers the hot endpoints itself and hands every other path to Django."""

from __future__ import annotations

from django.conf import settings
from django.test import override_settings

from tests.api.conftest import AsgiClient


async def test_hot_routes_skip_django_while_other_routes_go_through_it():
    client = AsgiClient()
    hot = await client.get("/get_vector", {"sentence": "fast"})
    assert hot.status_code == 200
    assert "x-frame-options" not in hot.headers  # Django's middleware never saw it
    other = await client.get("/info")
    assert other.status_code == 200
    assert "x-frame-options" in other.headers


async def test_turning_the_fast_path_off_sends_everything_through_django():
    client = AsgiClient()
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "FAST_PATH": False}):
        answer = await client.get("/get_vector", {"sentence": "through django"})
    assert answer.status_code == 200
    assert "x-frame-options" in answer.headers


async def test_percent_encoded_utf8_query_is_decoded():
    client = AsgiClient()
    answer = await client.get("/get_vector", {"sentence": "今天天气很好"})
    assert answer.status_code == 200
    assert len(answer.json()["vector"]) == 384


async def test_both_adapters_treat_odd_queries_and_media_types_alike():
    from tests.api.conftest import DrfClient

    for client in (AsgiClient(), DrfClient()):
        odd_query = await client.get("/get_vector", {"sentence": b"caf\xff".decode("latin-1")})
        assert odd_query.status_code == 200
        odd_type = await client.post("/v1/embeddings", b'{"input": "x"}', "application/x-json")
        assert odd_type.status_code == 415


async def test_a_clients_request_id_comes_back_byte_for_byte():
    client = AsgiClient()
    r = await client.client.get("/get_vector", params={"sentence": "traced"}, headers={"x-request-id": b"caf\xe9-42"})
    assert r.status_code == 200
    assert (b"x-request-id", b"caf\xe9-42") in r.headers.raw
