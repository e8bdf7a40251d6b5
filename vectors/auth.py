"""API keys: `Authorization: Bearer <key>` checked against hashed keys (djangorestframework-api-key).

Keys are stored hashed (SHA-512) by rest_framework_api_key and shown once at creation. A verified key
is remembered in this process for EMBED_API_KEY_CACHE_S seconds (by its SHA-256, never the raw key),
so the hot path does not query the database per request; a revocation therefore reaches other
processes within that many seconds.
"""

from __future__ import annotations

import hashlib
import time

from asgiref.sync import sync_to_async

from . import conf
from .api.errors import Unauthorized
from .ratelimit import check_rate

_verified: dict[str, tuple[str, float]] = {}
clock = time.monotonic


def key_from_header(authorization: str | None) -> str | None:
    """Return the key from `Bearer <key>`; another scheme is returned whole, so it is refused, not ignored."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else authorization.strip()


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _lookup(raw: str) -> str | None:
    from rest_framework_api_key.models import APIKey

    try:
        key = APIKey.objects.get_from_key(raw)  # verifies the hash and skips revoked keys
    except APIKey.DoesNotExist:
        return None
    return None if key.has_expired else key.name


def verify_key(raw: str | None) -> str | None:
    """Return the key's name, or None when keys are not required and no valid key was sent (sync).

    Raises:
        Unauthorized: a key is required and missing, or the key is unknown, revoked or expired.
    """
    limits = conf.limits()
    if raw is None:
        if limits.require_api_key:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        return None
    digest = _digest(raw)
    cached = _verified.get(digest)
    now = clock()
    if cached is not None and cached[1] > now:
        name = cached[0]
    else:
        name = _lookup(raw)
        if name is None:
            _verified.pop(digest, None)
            if not limits.require_api_key:
                return None  # keys optional: clients that must send something (OpenAI SDKs) send placeholders
            raise Unauthorized("invalid, revoked or expired API key")
        _verified[digest] = (name, now + limits.api_key_cache_s)
    check_rate(name)
    return name


async def check_api_key(raw: str | None) -> str | None:
    """Check a raw key as `verify_key` does; the database is crossed only when the key is not cached."""
    if raw is None or _verified.get(_digest(raw), ("", 0.0))[1] > clock():
        return verify_key(raw)
    return await sync_to_async(verify_key, thread_sensitive=True)(raw)


async def authorize(authorization: str | None) -> str | None:
    """Check an `Authorization` header (HTTP adapters; the WebSocket consumer calls check_api_key)."""
    return await check_api_key(key_from_header(authorization))


def forget_keys() -> None:
    """Drop every cached verification (after a revocation in this process, and in tests)."""
    _verified.clear()
