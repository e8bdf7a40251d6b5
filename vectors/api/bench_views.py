"""Bench-only baselines of the write-up: one `model.encode([sentence])` per request, sync and via sync_to_async.

Routed only when EMBED_BENCH_VIEWS is on (vectors/api/urls.py), for `manage.py benchmark --compare`.
Besides the batcher's encode thread, these are the only callers of model.encode, on purpose: they are
the control group that shows what the micro-batcher buys. Never turn them on in production.
"""

from __future__ import annotations

import numpy as np
import orjson
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse

from .. import conf
from ..engine.encoder import Encoder
from .errors import InvalidRequest


def _sentence(request: HttpRequest) -> str | None:
    sentence = request.GET.get("sentence", "")
    return sentence if sentence.strip() else None


def _missing() -> HttpResponse:
    error = InvalidRequest("query parameter 'sentence' is required and must not be blank", param="sentence")
    return HttpResponse(orjson.dumps(error.envelope()), status=400, content_type="application/json")


def _vector(rows: np.ndarray, encoder: Encoder) -> HttpResponse:
    """Answer like GET /get_vector; the registry's model lost its Normalize module, so normalise here."""
    row = np.asarray(rows, dtype=np.float32).reshape(-1)
    if encoder.normalizes:
        row = row / max(float(np.linalg.norm(row)), 1e-12)
    body = orjson.dumps({"vector": row}, option=orjson.OPT_SERIALIZE_NUMPY)
    return HttpResponse(body, content_type="application/json")


def get_vector_sync(request: HttpRequest) -> HttpResponse:
    """(a) A plain sync view: Django runs it in a thread and it encodes its one sentence there."""
    sentence = _sentence(request)
    if sentence is None:
        return _missing()
    encoder = conf.get_registry().get(None).encoder
    return _vector(encoder.model.encode([sentence]), encoder)


async def get_vector_async(request: HttpRequest) -> HttpResponse:
    """(b) The write-up's async version: `await sync_to_async(model.encode)` for each request's sentence."""
    sentence = _sentence(request)
    if sentence is None:
        return _missing()
    encoder = await conf.get_registry().get(None).aencoder()
    rows = await sync_to_async(encoder.model.encode)([sentence])
    return _vector(rows, encoder)
