"""Both adapters read JSON bodies with one parser: what is not JSON is a 400, never a 500."""

from __future__ import annotations

import pytest

from vectors.api.errors import InvalidRequest
from vectors.api.parsers import parse_json


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
