"""Keep the request log bounded: delete rows past an age, or past a row count (oldest first)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from .models import RequestLog

CHUNK_ROWS = 10_000  # rows per DELETE: short transactions, so the log writer is never starved
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


MAX_AGE = timedelta(days=365_000)  # a thousand years: anything older is everything


def parse_age(text: str) -> timedelta:
    """Parse an age like `90s`, `30m`, `12h`, `7d` or `2w`.

    Raises:
        ValueError: the text is not a positive number followed by one of s, m, h, d, w.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an age like 90s, 30m, 12h, 7d or 2w")
    try:
        age = timedelta(**{UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        age = timedelta.max
    if age > MAX_AGE:  # the cutoff, now minus the age, must still be a date
        raise ValueError(f"{text!r} is longer ago than the {MAX_AGE.days}d an age may be")
    return age


def count_older_than(age: timedelta, *, using: str = "default", now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - age
    return RequestLog.objects.using(using).filter(created_at__lt=cutoff).count()


def prune_older_than(age: timedelta, *, using: str = "default", now: datetime | None = None) -> int:
    """Delete rows older than `age`, a chunk at a time; return how many went."""
    cutoff = (now or timezone.now()) - age
    return _delete_in_chunks(Q(created_at__lt=cutoff), "created_at", using)


def excess_rows(max_rows: int, *, using: str = "default") -> int | None:
    """Return the id of the newest row past the `max_rows` newest (None when within the bound)."""
    ids = RequestLog.objects.using(using).order_by("-pk").values_list("pk", flat=True)
    return next(iter(ids[max_rows : max_rows + 1]), None)


def count_beyond(max_rows: int, *, using: str = "default") -> int:
    """Return how many rows `trim_to(max_rows)` would delete (a full count: for dry runs)."""
    return max(0, RequestLog.objects.using(using).count() - max_rows)


def trim_to(max_rows: int, *, using: str = "default") -> int:
    """Delete the oldest rows (by insertion order) until at most `max_rows` remain; return how many went."""
    cutoff = excess_rows(max_rows, using=using)
    if cutoff is None:
        return 0
    return _delete_in_chunks(Q(pk__lte=cutoff), "pk", using)


def _delete_in_chunks(matching: Q, order: str, using: str) -> int:
    """Delete the rows `matching`, oldest first, CHUNK_ROWS per statement; return how many went."""
    rows = RequestLog.objects.using(using)
    deleted = 0
    while True:
        chunk = rows.filter(matching).order_by(order).values("pk")[:CHUNK_ROWS]
        count, _ = rows.filter(pk__in=chunk).delete()
        deleted += count
        if count < CHUNK_ROWS:
            return deleted
