"""Both adapters negotiate alike: an Accept that admits no JSON is a 406, a ?format= but json a 404."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from tests.api.conftest import Answer, send_raw
from vectors.api import negotiation

JSON = (b"content-type", b"application/json")
WRONG_KEY = (b"authorization", b"Bearer not-a-key")

# Every route the lean route answers: method, path, and the body (POST) or query (GET) of a good request.
ROUTES = {
    "openai": ("POST", "/v1/embeddings", b'{"input": "negotiated"}'),
    "tei": ("POST", "/embed", b'{"inputs": "negotiated"}'),
    "similarity": ("POST", "/similarity", b'{"inputs": {"source_sentence": "a", "sentences": ["b"]}}'),
    "get_vector": ("GET", "/get_vector", b"sentence=negotiated"),
    "get_vector_simple": ("GET", "/get_vector_simple", b"sentence=negotiated"),
    "get_vector_async": ("GET", "/get_vector_async", b"sentence=negotiated"),
}
REFUSED = {
    "xml": "application/xml",
    "html": "text/html",
    "several_without_json": "text/plain, application/xml;q=0.9",
    "json_suffix": "application/vnd.api+json",  # says "json", yet is not application/json
    "text_wildcard": "text/*",
    "empty": "",  # a list of nothing acceptable (no header at all means anything)
}
ADMITTED = {
    "none": None,
    "anything": "*/*",
    "json": "application/json",
    "application_wildcard": "application/*",
    "json_among_others": "application/json;q=0.5, text/plain",
    "java_urlconnection": "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
    "json_with_charset": "APPLICATION/JSON; charset=utf-8",
}
NOT_ACCEPTABLE = {
    "message": "cannot answer in any type the Accept header allows; this route answers application/json",
    "type": "invalid_request_error",
    "param": None,
    "code": "not_acceptable",
}


def accept(value: str | None) -> list[tuple[bytes, bytes]]:
    return [] if value is None else [(b"accept", value.encode("latin-1"))]


async def call(route: str, headers: list[tuple[bytes, bytes]], query: bytes = b"", body: bytes | None = None) -> Answer:
    """Send a good request to `route` with these extra headers, through the full ASGI app."""
    method, path, payload = ROUTES[route]
    if method == "GET":
        return await send_raw(path, [], headers, "GET", payload + query)
    body = payload if body is None else body
    return await send_raw(path, [body], [JSON, (b"content-length", str(len(body)).encode()), *headers], "POST", query)


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("route", ROUTES)
async def test_an_accept_that_admits_no_json_gets_the_same_406_from_both_adapters(fast_path, route, value):
    answer = await call(route, accept(value))
    assert answer.status_code == 406, answer.content
    assert answer["content-type"] == "application/json"
    assert answer["x-request-id"]  # timed and logged like any other answer, on both adapters
    assert answer.json()["error"] == NOT_ACCEPTABLE


async def test_an_accept_that_admits_json_is_answered_in_json_by_both_adapters(fast_path):
    # One test, not one per case: each test loads the model afresh.
    answers = {(route, name): await call(route, accept(value)) for route in ROUTES for name, value in ADMITTED.items()}
    assert {case: (a.status_code, a["content-type"]) for case, a in answers.items()} == dict.fromkeys(
        answers, (200, "application/json")
    )


async def test_a_repeated_accept_header_is_read_as_one_list_by_both_adapters(fast_path):
    answer = await call("openai", [(b"accept", b"text/html"), (b"accept", b"application/json")])
    assert answer.status_code == 200, answer.content
    answer = await call("openai", [(b"accept", b"text/html"), (b"accept", b"application/xml")])
    assert answer.status_code == 406, answer.content


async def test_a_format_other_than_json_gets_the_same_404_from_both_adapters(fast_path):
    for route, query in (("openai", b"format="), ("get_vector", b"&format=")):
        answer = await call(route, [], query + b"xml")
        assert answer.status_code == 404, (route, answer.content)
        assert answer.json()["error"] == {
            "message": "not found: this route answers ?format=json or no ?format at all",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
        answer = await call(route, [], query + b"json")
        assert answer.status_code == 200, (route, answer.content)


@pytest.mark.django_db(transaction=True)
async def test_the_406_comes_before_the_key_and_the_body_are_looked_at(fast_path):
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "REQUIRE_API_KEY": True}):
        answer = await call("openai", [WRONG_KEY, *accept("application/xml")], body=b'{"input": ')
    assert answer.status_code == 406, answer.content
    answer = await send_raw("/v1/embeddings", [b"input=x"], [(b"content-type", b"text/plain"), *accept("text/html")])
    assert answer.status_code == 406, answer.content


async def test_a_body_declared_over_the_limit_gets_413_before_the_406(fast_path):
    headers = [JSON, (b"content-length", b"5000"), *accept("application/xml")]
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "MAX_BODY_BYTES": 1000}):
        answer = await send_raw("/v1/embeddings", [b"{}"], headers)
    assert answer.status_code == 413, answer.content


async def test_a_chunked_body_over_the_limit_with_an_unacceptable_accept_is_refused_either_way(fast_path):
    chunks = [b'{"input": "', b"x" * 3000, b'"}']
    headers = [JSON, (b"transfer-encoding", b"chunked"), *accept("application/xml")]
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "MAX_BODY_BYTES": 1000}):
        answer = await send_raw("/v1/embeddings", chunks, headers)
    # As with a wrong key (test_api_keys): Django reads a body before its view negotiates.
    expected = (406, "not_acceptable") if fast_path else (413, "payload_too_large")
    assert (answer.status_code, answer.json()["error"]["code"]) == expected, answer.content


def test_common_accepts_skip_drfs_negotiation_and_others_run_it_once_per_value(monkeypatch):
    calls = []
    select_renderer = negotiation.select_renderer
    monkeypatch.setattr(negotiation, "select_renderer", lambda *args: calls.append(args) or select_renderer(*args))
    negotiation.accepts_json.cache_clear()
    for _ in range(3):
        for value in (None, "*/*", "application/json"):
            negotiation.negotiate(value, {})
        negotiation.negotiate("text/html, application/json", {})
    assert calls == [("text/html, application/json", {})]
