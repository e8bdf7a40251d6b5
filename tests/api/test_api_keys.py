"""API keys: required in production settings; Bearer header; hashed at rest; wrong/missing/revoked -> 401."""

from __future__ import annotations

import logging
import re

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from rest_framework_api_key.models import APIKey

from tests.api.conftest import send_raw
from vectors import auth, ratelimit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_caches():
    auth.forget_keys()
    ratelimit.reset()
    yield
    auth.forget_keys()
    ratelimit.reset()


def keys_required(**extra):
    return override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "REQUIRE_API_KEY": True, **extra})


async def get(client, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if hasattr(client.client, "defaults"):  # Django's AsyncClient
        r = await client.client.get("/get_vector", {"sentence": "keyed"}, headers=headers)
        return r.status_code, r.json(), dict(r.headers)
    r = await client.client.get("/get_vector", params={"sentence": "keyed"}, headers=headers)
    return r.status_code, r.json(), dict(r.headers)


async def test_missing_wrong_and_revoked_keys_get_401_and_a_valid_key_passes(client):
    from asgiref.sync import sync_to_async

    _, raw = await sync_to_async(APIKey.objects.create_key)(name="java-batch")
    with keys_required():
        status, body, _ = await get(client, None)
        assert status == 401 and body["error"]["type"] == "authentication_error"
        status, body, _ = await get(client, "not-a-key")
        assert status == 401
        status, body, _ = await get(client, raw[:-1] + ("x" if raw[-1] != "x" else "y"))
        assert status == 401
        status, body, _ = await get(client, raw)
        assert status == 200 and len(body["vector"]) == 384
        await sync_to_async(call_command)("apikey", "revoke", "java-batch")
        status, body, _ = await get(client, raw)
        assert status == 401


async def test_keys_are_optional_in_development_settings_and_placeholders_pass(client):
    status, _, _ = await get(client, None)
    assert status == 200
    status, _, _ = await get(client, "unused")  # what OpenAI SDK users put when no key is needed
    assert status == 200


async def test_per_key_rate_limit_answers_429_with_retry_after(client, monkeypatch):
    from asgiref.sync import sync_to_async

    monkeypatch.setattr(ratelimit, "clock", lambda: 1000.0)  # time stands still: no refill between requests

    _, raw = await sync_to_async(APIKey.objects.create_key)(name="greedy")
    with keys_required(RATE_LIMIT_PER_KEY=0.5, RATE_LIMIT_BURST=2):
        statuses = [(await get(client, raw))[0] for _ in range(2)]
        status, body, headers = await get(client, raw)
    assert statuses == [200, 200]
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) >= 1


async def test_a_placeholder_or_an_unknown_key_costs_one_lookup_not_one_per_request(client, monkeypatch):
    lookups = []
    real = auth._lookup

    def counted(raw):
        lookups.append(raw)
        return real(raw)

    monkeypatch.setattr(auth, "_lookup", counted)
    # A stopped clock: a first request that loads the model on a busy machine outlasts UNKNOWN_S.
    monkeypatch.setattr(auth, "clock", lambda: 1000.0)
    for _ in range(3):
        assert (await get(client, "unused"))[0] == 200  # an OpenAI SDK's placeholder, keys optional
    with keys_required():
        for _ in range(3):
            assert (await get(client, "not-a-key"))[0] == 401
    assert lookups == ["unused", "not-a-key"]


WRONG_KEY = (b"authorization", b"Bearer not-a-key")
JSON = (b"content-type", b"application/json")
BAD_BODIES = {
    "not_json": ([b'{"input": '], [JSON, (b"content-length", b"10")]),
    "wrong_media_type": ([b"input=x"], [(b"content-type", b"text/plain"), (b"content-length", b"7")]),
}


@pytest.mark.parametrize("chunks, headers", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_a_wrong_key_gets_401_before_the_body_is_looked_at(fast_path, chunks, headers):
    with keys_required(MAX_BODY_BYTES=1000), override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        answer = await send_raw("/v1/embeddings", chunks, [WRONG_KEY, *headers])
    assert answer.status_code == 401, answer.content
    assert answer.json()["error"] == {
        "message": "invalid, revoked or expired API key",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


def key_store_down(monkeypatch):
    from django.db import OperationalError

    def down(manager, key):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(type(APIKey.objects), "get_from_key", down)


async def test_with_the_key_store_down_known_keys_and_placeholders_pass_and_unknown_keys_get_503(
    client, monkeypatch, caplog
):
    from asgiref.sync import sync_to_async

    _, raw = await sync_to_async(APIKey.objects.create_key)(name="java-batch")
    now = [1000.0]
    monkeypatch.setattr(auth, "clock", lambda: now[0])
    with keys_required():
        assert (await get(client, raw))[0] == 200  # verified: trusted for EMBED_API_KEY_CACHE_S
    key_store_down(monkeypatch)
    now[0] += 600  # long past that
    with keys_required():
        status, _, _ = await get(client, raw)
        assert status == 200  # trusted until the database answers again
        status, body, headers = await get(client, "never-seen-before")
        assert status == 503 and body["error"]["code"] == "key_store_unavailable"
        assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) >= 1
    status, _, _ = await get(client, "unused")  # keys optional: the placeholder passes
    assert status == 200
    assert "API key store unavailable (OperationalError)" in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("x" * 51,), "the key's name has 51 characters; at most 50"),
        (("java-batch", "--expires-days", "100000000"), "--expires-days 100000000: that date is past the year 9999"),
        (("java-batch", "--expires-days", "0"), "--expires-days must be > 0"),
        (("   ",), "non-empty name"),
    ],
)
def test_apikey_create_refuses_what_it_cannot_store_with_a_command_error(args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("apikey", "create", *args)
    assert not APIKey.objects.exists()


def test_the_raw_key_is_stored_nowhere_and_logged_nowhere(capsys, caplog):
    caplog.set_level(logging.DEBUG)
    call_command("apikey", "create", "audited")
    printed = capsys.readouterr().out
    raw = printed.strip().splitlines()[-1]
    key = APIKey.objects.get(name="audited")
    assert raw not in key.hashed_key and key.hashed_key.startswith("sha512$$")
    for row in APIKey.objects.values_list(flat=False):
        assert all(raw not in str(value) for value in row)
    assert raw not in caplog.text
    call_command("apikey", "list")
    assert raw not in capsys.readouterr().out


async def test_a_body_declared_over_the_limit_gets_413_before_the_key_is_looked_at(fast_path):
    # As the server itself refuses it (daphne does so before the application is called).
    with keys_required(MAX_BODY_BYTES=1000):
        answer = await send_raw("/v1/embeddings", [b"{}"], [WRONG_KEY, JSON, (b"content-length", b"5000")])
    assert answer.status_code == 413, answer.content
    assert answer.json()["error"]["message"] == "request body has 5000 bytes; the limit is 1000"


async def test_a_chunked_body_over_the_limit_with_a_wrong_key_is_refused_either_way(fast_path):
    chunks = [b'{"input": "', b"x" * 3000, b'"}']
    with keys_required(MAX_BODY_BYTES=1000):
        answer = await send_raw("/v1/embeddings", chunks, [WRONG_KEY, JSON, (b"transfer-encoding", b"chunked")])
    # The lean route checks the key before reading; Django reads a body before its view runs, so the
    # limit cuts it off first there (on daphne, the server refuses it first on both).
    expected = (401, "invalid_api_key") if fast_path else (413, "payload_too_large")
    assert (answer.status_code, answer.json()["error"]["code"]) == expected, answer.content


async def test_a_wrong_key_is_a_401_even_with_a_query_that_is_not_utf8(fast_path):
    # The query's charset is checked after the key, as on DRF: a wrong key is a 401 whatever else was sent.
    with keys_required():
        headers = [(b"authorization", b"Bearer not-a-key")]
        answer = await send_raw("/get_vector", [], headers, method="GET", query=b"sentence=%E9")
    assert answer.status_code == 401, answer.content
