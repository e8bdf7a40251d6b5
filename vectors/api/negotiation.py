"""Content negotiation for the lean route, decided by DRF's own negotiator so both adapters answer alike.

An Accept header that admits no JSON is a 406, a `?format=` other than json a 404, as DRF's views answer;
no Accept header, or a common one, costs a set lookup (the lean route is the hot path), any other value
DRF's negotiator once per distinct value.
"""

from __future__ import annotations

import functools

from django.core.signals import setting_changed
from django.dispatch import receiver
from rest_framework import exceptions as drf
from rest_framework.settings import api_settings

# Accept values that admit JSON at a glance: curl, httpx, requests, the OpenAI SDKs.
ACCEPTS_JSON = frozenset({"*/*", "application/json"})


def joined_header(scope: dict, name: bytes) -> str | None:
    """Every value of header `name` joined with commas, as Django joins a repeated header; None if absent."""
    values = [value for key, value in scope.get("headers", ()) if key.lower() == name]
    return b",".join(values).decode("latin-1") if values else None


class Negotiable:
    """The parts of a DRF request that its content negotiation reads."""

    def __init__(self, accept: str | None, query: dict[str, str]) -> None:
        self.headers = {} if accept is None else {"accept": accept}
        self.META = {} if accept is None else {"HTTP_ACCEPT": accept}  # what older DRF releases read
        self.query_params = query


def negotiate(accept: str | None, query: dict[str, str]) -> None:
    """Raise the 404 or 406 that DRF's negotiation raises for a `?format=` or an Accept that rules out JSON."""
    # DRF itself decides, so both adapters answer alike; no Accept or a common one costs a lookup (hot path).
    if (accept is None or accept in ACCEPTS_JSON or accepts_json(accept)) and not query.get(
        api_settings.URL_FORMAT_OVERRIDE or ""
    ):
        return
    select_renderer(accept, query)


@functools.lru_cache(maxsize=64)  # a client sends the same Accept every time; servers cap a header at ~16 KB
def accepts_json(accept: str) -> bool:
    """Tell whether DRF's negotiation finds a renderer for this Accept header."""
    try:
        select_renderer(accept, {})
    except drf.NotAcceptable:
        return False
    return True


def select_renderer(accept: str | None, query: dict[str, str]) -> None:
    """Run DRF's content negotiation as a view does; raise what it raises (Http404, NotAcceptable)."""
    renderers = [renderer() for renderer in api_settings.DEFAULT_RENDERER_CLASSES]
    api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS().select_renderer(Negotiable(accept, query), renderers)


@receiver(setting_changed)
def forget_verdicts(*, setting: str, **kwargs: object) -> None:
    """Drop the cached verdicts when the renderers or the negotiation class may have changed."""
    if setting == "REST_FRAMEWORK":
        accepts_json.cache_clear()
