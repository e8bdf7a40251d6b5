"""Per-key rate limit: a token bucket per API key name, in this process. Fairness, not a security control."""

from __future__ import annotations

import math
import time

from . import conf
from .api.errors import Overloaded

clock = time.monotonic
_buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last refill time)


def check_rate(name: str) -> None:
    """Take one request from `name`'s bucket.

    Raises:
        Overloaded: the bucket is empty (answered 429 with Retry-After).
    """
    limits = conf.limits()
    rate = limits.rate_limit_per_key
    if rate <= 0:
        return
    burst = float(limits.rate_limit_burst or max(1, math.ceil(rate)))
    now = clock()
    tokens, last = _buckets.get(name, (burst, now))
    tokens = min(burst, tokens + (now - last) * rate)
    if tokens < 1:
        _buckets[name] = (tokens, now)
        err = Overloaded(f"API key {name!r} is over its rate of {rate:g} requests/s", code="rate_limited")
        err.retry_after_s = max(1, math.ceil((1 - tokens) / rate))
        raise err
    _buckets[name] = (tokens - 1, now)


def reset() -> None:
    """Refill every bucket (tests)."""
    _buckets.clear()
