"""API keys: `Authorization: Bearer <key>` checked against hashed keys (djangorestframework-api-key).

Keys are stored hashed (SHA-512) by rest_framework_api_key and shown once at creation. A verified key
is remembered in this process for EMBED_API_KEY_CACHE_S seconds (by its SHA-256, never the raw key),
so the hot path does not query the database per request; a revocation therefore reaches other
processes within that many seconds. A key the database does not know (an OpenAI SDK's placeholder
where keys are optional, a wrong key where they are required) is remembered as unknown for a few
seconds, so neither costs a query per request either.

The database being down or locked does not stop the service (DESIGN.md's failure table): a key
verified before is trusted past its time until the database answers again, a placeholder passes where
keys are optional, and only a key never verified where keys are required gets 503
`key_store_unavailable`. A connection the error left broken is closed, so the next lookup reconnects.
"""

from __future__ import annotations

import hashlib
import logging
import time

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

from . import conf
from .api.errors import Unauthorized, Unavailable
from .ratelimit import check_rate

logger = logging.getLogger(__name__)

# digest -> (the key's name, or None for a key the database does not know; trusted until)
_verified: dict[str, tuple[str | None, float]] = {}
clock = time.monotonic
UNKNOWN_S = 5.0  # how long an unknown key is remembered as unknown (at most EMBED_API_KEY_CACHE_S)
RETRY_S = 5.0  # while the database fails, how long before the same key asks it again
REMEMBERED = 4096  # beyond this many remembered keys, the expired ones are forgotten


def key_from_header(authorization: str | None) -> str | None:
    """Return the key from `Bearer <key>`; another scheme is returned whole, so it is refused, not ignored."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else authorization.strip()


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _lookup(raw: str) -> str | None:
    """The key's name, or None if the database knows no valid key like it.

    Raises:
        DatabaseError: the database could not be asked; a connection the error left unusable is closed.
    """
    from rest_framework_api_key.models import APIKey

    try:
        key = APIKey.objects.get_from_key(raw)  # verifies the hash and skips revoked keys
    except APIKey.DoesNotExist:
        return None
    except DatabaseError:
        # Nothing else closes this thread's connection (the lean route sends no request signals).
        connections[APIKey.objects.db].close_if_unusable_or_obsolete()
        raise
    return None if key.has_expired else key.name


def _remember(digest: str, name: str | None, until: float, now: float) -> None:
    if len(_verified) >= REMEMBERED and digest not in _verified:
        for stale in [d for d, (_, expires) in _verified.items() if expires <= now]:
            del _verified[stale]
        if len(_verified) >= REMEMBERED:  # a flood of distinct unknown keys: forget those, keep the real ones
            for unknown in [d for d, (known, _) in _verified.items() if known is None]:
                del _verified[unknown]
    _verified[digest] = (name, until)


def _without_database(digest: str, before: tuple[str | None, float] | None, now: float, exc: Exception) -> str | None:
    """Answer for a key while the database cannot be asked (see the module's docstring)."""
    limits = conf.limits()
    if before is not None and before[0] is not None:
        logger.warning("API key store unavailable (%s); trusting key %r verified before", type(exc).__name__, before[0])
        name: str | None = before[0]
    elif not limits.require_api_key:
        logger.warning("API key store unavailable (%s); keys are optional, so the request goes on", type(exc).__name__)
        name = None
    else:
        logger.warning("API key store unavailable (%s); cannot check a key not seen before", type(exc).__name__)
        err = Unavailable(
            "cannot check the API key right now: the key store is unavailable", code="key_store_unavailable"
        )
        err.retry_after_s = int(RETRY_S)
        raise err from exc
    _remember(digest, name, now + RETRY_S, now)
    return name


def verify_key(raw: str | None, *, charge: bool = True) -> str | None:
    """Return the key's name, or None when keys are not required and no valid key was sent (sync).

    Args:
        charge: take one request from the key's rate bucket. Every HTTP request is one; a WebSocket's
            handshake or auth frame is not (each of its embed frames is charged as it arrives).

    Raises:
        Unauthorized: a key is required and missing, or the key is unknown, revoked or expired.
        Unavailable: a key is required and this one cannot be checked: the database is down.
        Overloaded: the key is over its rate (only when charged).
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
        try:
            name = _lookup(raw)
        except DatabaseError as exc:
            name = _without_database(digest, cached, now, exc)
        else:
            trusted = limits.api_key_cache_s if name is not None else min(UNKNOWN_S, limits.api_key_cache_s)
            _remember(digest, name, now + trusted, now)
    if name is None:
        if not limits.require_api_key:
            return None  # keys optional: clients that must send something (OpenAI SDKs) send placeholders
        raise Unauthorized("invalid, revoked or expired API key")
    if charge:
        check_rate(name)
    return name


async def check_api_key(raw: str | None, *, charge: bool = True) -> str | None:
    """Check a raw key as `verify_key` does; the database is crossed only when the key is not cached."""
    if raw is None or _verified.get(_digest(raw), ("", 0.0))[1] > clock():
        return verify_key(raw, charge=charge)
    return await sync_to_async(verify_key, thread_sensitive=True)(raw, charge=charge)


async def authorize(authorization: str | None) -> str | None:
    """Check an `Authorization` header (HTTP adapters; the WebSocket consumer calls check_api_key)."""
    return await check_api_key(key_from_header(authorization))


def forget_keys() -> None:
    """Drop every cached verification (after a revocation in this process, and in tests)."""
    _verified.clear()
