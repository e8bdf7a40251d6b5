"""What the dashboard is asked about: a window back from now, an optional endpoint and model, and its rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from ..models import RequestLog


@dataclass(frozen=True)
class Window:
    """A span of time back from now, cut into buckets for the charts."""

    key: str
    label: str
    span: timedelta
    bucket_s: int


WINDOWS = {
    w.key: w
    for w in (
        Window("5m", "last 5 minutes", timedelta(minutes=5), 10),
        Window("1h", "last hour", timedelta(hours=1), 60),
        Window("24h", "last 24 hours", timedelta(hours=24), 900),
        Window("7d", "last 7 days", timedelta(days=7), 7200),
    )
}
DEFAULT_WINDOW = "1h"


@dataclass(frozen=True)
class Selection:
    """What to show: a window ending now, optionally one endpoint and/or one model."""

    window: Window
    endpoint: str = ""
    model: str = ""
    now: datetime = field(default_factory=timezone.now)

    @property
    def start(self) -> datetime:
        return self.now - self.window.span


def filtered_rows(selection: Selection, using: str = "default") -> QuerySet:
    """Return the RequestLog rows of the selection's endpoint and model, at any time (no ordering)."""
    rows = RequestLog.objects.using(using).order_by()
    if selection.endpoint:
        rows = rows.filter(endpoint=selection.endpoint)
    if selection.model:
        rows = rows.filter(model=selection.model)
    return rows


def window_rows(selection: Selection, using: str = "default") -> QuerySet:
    """Return the RequestLog rows of the selection (no ordering)."""
    return filtered_rows(selection, using).filter(created_at__gt=selection.start, created_at__lte=selection.now)


def bucket_edges(selection: Selection) -> list[tuple[datetime, datetime]]:
    """Cut the window into buckets aligned to whole multiples of the bucket size (the ends may be partial)."""
    size = selection.window.bucket_s
    first = math.floor(selection.start.timestamp() / size) * size
    last = selection.now.timestamp()
    edges = []
    at = first
    while at < last:
        lo = max(at, selection.start.timestamp())
        hi = min(at + size, last)
        edges.append((datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)))
        at += size
    return edges


def in_bucket(selection: Selection, lo: datetime, hi: datetime) -> Q:
    """Rows from `lo` (inclusive, like EpochBucket's rounding down) to `hi`, within the window's (start, now]."""
    lower = Q(created_at__gt=lo) if lo == selection.start else Q(created_at__gte=lo)
    upper = Q(created_at__lte=hi) if hi == selection.now else Q(created_at__lt=hi)
    return lower & upper
