"""Both adapters read JSON bodies with one parser: what is not JSON is a 400, never a 500."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from tests.api.conftest import send_raw
from vectors.api.errors import InvalidRequest
from vectors.api.parsers import parse_json

JSON = (b"content-type", b"application/json")
CHUNKED = (b"transfer-encoding", b"chunked")


def length(raw: bytes) -> tuple[bytes, bytes]:
    return (b"content-length", str(len(raw)).encode())


async def test_nesting_past_the_recursion_limit_is_a_400_not_a_500(client):
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        response = await client.post("/v1/embeddings", raw)
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("raw", [b'\xef\xbb\xbf{"input": "x"}', '{"input": "x"}'.encode("utf-16")])
async def test_a_bom_or_utf16_body_is_read_alike_by_both_adapters(client, raw):
    response = await client.post("/v1/embeddings", raw)
    assert response.status_code == 200, response.content
    assert len(response.json()["data"]) == 1


def test_parse_json_takes_lone_surrogate_escapes_and_refuses_nan():
    assert parse_json(b'{"input": "\\ud800"}') == {"input": "\ud800"}  # validation names it, with the field
    assert parse_json(b"  ") == {}
    for raw in (b'{"input": NaN}', b"[1e5, Infinity]", b"\xff", b'{"a": 1', b"[" * 5000):
        with pytest.raises(InvalidRequest) as caught:
            parse_json(raw)
        assert caught.value.code == "invalid_json"


async def test_a_chunked_body_without_content_length_is_read_whole_and_held_to_the_limit(fast_path):
    answer = await send_raw("/v1/embeddings", [b'{"input": ', b'"sent in', b' chunks"}'], [JSON, CHUNKED])
    assert answer.status_code == 200, answer.content
    assert len(answer.json()["data"]) == 1
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "MAX_BODY_BYTES": 1000}):
        answer = await send_raw("/v1/embeddings", [b'{"input": "', b"x" * 600, b"x" * 600, b'"}'], [JSON, CHUNKED])
    assert answer.status_code == 413, answer.content
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert answer.json()["error"]["message"] == "request body is larger than 1000 bytes"


async def test_a_get_that_declares_a_body_over_the_limit_gets_413_from_both_adapters(fast_path):
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "MAX_BODY_BYTES": 1000}):
        answer = await send_raw("/get_vector", [b"x" * 10], [(b"content-length", b"5000")], "GET", b"sentence=hi")
    assert answer.status_code == 413, answer.content
    assert answer.json()["error"]["code"] == "payload_too_large"


async def test_a_post_without_a_content_type_is_read_as_json(fast_path):
    raw = b'{"input": "no content type"}'
    answer = await send_raw("/v1/embeddings", [raw], [length(raw)])
    assert answer.status_code == 200, answer.content
    assert len(answer.json()["data"]) == 1


async def test_an_unsupported_media_type_gets_the_same_415_from_both_adapters(fast_path):
    raw = b"input=x"
    answer = await send_raw("/v1/embeddings", [raw], [(b"content-type", b"text/plain"), length(raw)])
    assert answer.status_code == 415, answer.content
    assert answer.json()["error"] == {
        "message": "unsupported media type 'text/plain'; send application/json",
        "type": "invalid_request_error",
        "param": None,
        "code": "unsupported_media_type",
    }
