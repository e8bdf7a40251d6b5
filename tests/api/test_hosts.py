"""A Host outside ALLOWED_HOSTS gets the same JSON 400 on the lean route as on every route Django answers."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest
from django.test import AsyncClient

from vectors.logfilters import SecurityWithoutTraceback


def app_client(host: str) -> httpx.AsyncClient:
    from embedservice.asgi import application

    transport = httpx.ASGITransport(app=application)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers={"host": host})


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/embeddings", b'{"input": "x"}'),  # the lean route
        ("GET", "/get_vector?sentence=x", b""),  # the lean route
        ("GET", "/health", b""),  # Django
        ("GET", "/v1/models", b""),  # Django and DRF
    ],
)
async def test_a_host_outside_allowed_hosts_gets_a_400_naming_it(method, path, body):
    async with app_client("evil.example:8000") as client:
        answer = await client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_host"
    assert "'evil.example:8000'" in error["message"]
    assert "add 'evil.example' to DJANGO_ALLOWED_HOSTS" in error["message"]  # the domain: the port never matches


async def test_an_allowed_host_with_a_port_is_answered():
    async with app_client("localhost:8000") as client:
        answer = await client.post(
            "/v1/embeddings", content=b'{"input": "x"}', headers={"content-type": "application/json"}
        )
    assert answer.status_code == 200


async def test_the_drf_views_answer_the_same():
    answer = await AsyncClient().post(
        "/v1/embeddings", b'{"input": "x"}', content_type="application/json", headers={"host": "evil.example"}
    )
    assert answer.status_code == 400 and orjson.loads(answer.content)["error"]["code"] == "invalid_host"


async def test_two_host_headers_are_refused_as_django_refuses_them():
    from embedservice.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        request = client.build_request("POST", "/v1/embeddings", content=b'{"input": "x"}')
        request.headers = httpx.Headers(
            [("host", "localhost"), ("host", "evil.example"), ("content-type", "application/json")]
        )
        answer = await client.send(request)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_host"


def test_the_console_log_handler_uses_the_filter():
    from django.conf import settings

    assert "security_without_traceback" in settings.LOGGING["handlers"]["console"]["filters"]
    named = settings.LOGGING["filters"]["security_without_traceback"]["()"]
    assert named == "vectors.logfilters.SecurityWithoutTraceback"


def test_a_security_refusal_is_logged_as_one_line_without_its_traceback():
    try:
        raise ValueError("where Django noticed it")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    refusal = logging.LogRecord("django.security.DisallowedHost", logging.ERROR, __file__, 1, "bad host", (), exc_info)
    other = logging.LogRecord("vectors.api", logging.ERROR, __file__, 1, "a failure", (), exc_info)
    keep = SecurityWithoutTraceback()
    assert keep.filter(refusal) and keep.filter(other)
    assert refusal.exc_info is None and other.exc_info is exc_info
