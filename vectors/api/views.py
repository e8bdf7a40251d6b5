"""Thin async DRF views: each embedding endpoint adapts one function of vectors.api.endpoints."""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version

from adrf.views import APIView
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from .. import __version__, auth, conf, lifecycle
from ..engine.errors import EngineStopped
from . import accounting, core, endpoints
from .errors import PayloadTooLarge
from .openapi import BODY_ERRORS, KEY_ERRORS, OPENAI_ERRORS, QUERY_ERRORS, RETRY_AFTER, error_responses
from .parsers import check_media_type, parse_json, parse_query
from .serializers import EmbeddingsRequestSerializer, EmbedRequestSerializer, SimilarityRequestSerializer

VECTOR_LIST = serializers.ListField(child=serializers.FloatField())
VECTOR_SCHEMA = {"type": "array", "items": {"type": "number"}}
CLIENT_CLOSED = 499


class EmbeddingView(APIView):
    """Common flow of every embedding endpoint: limits, draining, timing headers, metrics and the log."""

    endpoint = "embed"
    takes_body = True  # a JSON body (POST); else the query string
    outcome: core.EmbedOutcome | None = None
    caller: str | None = None

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        # Before DRF's checks: a 404/406 of its content negotiation is timed and logged like any answer.
        self.stopwatch = core.Stopwatch()
        self.request_id = request.headers.get("X-Request-ID") or accounting.new_request_id()
        super().initial(request, *args, **kwargs)

    async def answer(self, handler: endpoints.Handler) -> Response:
        # The lean route's order: the key before the body, so a wrong key is a 401 whatever it sent.
        self.caller = await auth.authorize(self.request.headers.get("Authorization"))
        data = self.json_body() if self.takes_body else parse_query(self.request.META.get("QUERY_STRING", ""))
        if lifecycle.is_draining():
            raise EngineStopped("the service is draining and takes no new work")
        try:
            result = await handler(data)
        except asyncio.CancelledError:
            self.account(CLIENT_CLOSED, "client_closed")
            raise
        self.outcome = result.outcome
        return Response(result.payload)

    def json_body(self) -> object:
        """Read the body as the lean route does: media type, then size limit, then JSON.

        Not DRF's request.data: it reads a body only when Content-Length announces one (a chunked
        body came in empty) and picks a parser by Content-Type (a body without one was a 415).
        """
        request = self.request._request
        check_media_type(request.META.get("CONTENT_TYPE"))
        limit = conf.limits().max_body_bytes
        PayloadTooLarge.refuse_declared(request.META.get("CONTENT_LENGTH"), limit)
        try:
            body = request.body
        except RequestDataTooBig:
            raise PayloadTooLarge.over(limit) from None
        if len(body) > limit:  # Django holds bodies to DATA_UPLOAD_MAX_MEMORY_SIZE; the limit is EMBEDDINGS'
            raise PayloadTooLarge.over(limit)
        return parse_json(body)

    def finalize_response(self, request: Request, response: Response, *args: object, **kwargs: object) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if getattr(self, "stopwatch", None) is None:
            return response
        total_ms = self.stopwatch.ms()
        for key, value in accounting.timing_headers(self.request_id, total_ms, self.outcome):
            response[key] = value
        error = response.data.get("error") if isinstance(response.data, dict) else None
        self.account(response.status_code, error.get("code", "") if isinstance(error, dict) else "", total_ms)
        return response

    def account(self, status: int, error_code: str, total_ms: float | None = None) -> None:
        accounting.account(
            endpoint=self.endpoint,
            status=status,
            total_ms=self.stopwatch.ms() if total_ms is None else total_ms,
            outcome=self.outcome,
            error_code=error_code,
            caller=self.caller or self.request.META.get("REMOTE_ADDR", ""),
            request_id=self.request_id,
        )


class EmbeddingsView(EmbeddingView):
    """OpenAI-compatible embeddings."""

    endpoint = "openai"

    @extend_schema(
        request=EmbeddingsRequestSerializer,
        responses={
            200: inline_serializer(
                "EmbeddingsResponse",
                {
                    "object": serializers.CharField(),
                    "data": serializers.ListField(child=serializers.DictField()),
                    "model": serializers.CharField(),
                    "usage": serializers.DictField(),
                },
            ),
            **error_responses(OPENAI_ERRORS),
        },
        parameters=[RETRY_AFTER],
        summary="Create embeddings (OpenAI contract)",
    )
    async def post(self, request: Request) -> Response:
        return await self.answer(endpoints.openai_embeddings)


class EmbedView(EmbeddingView):
    """TEI-compatible embed: a list of vectors."""

    endpoint = "tei"

    @extend_schema(
        request=EmbedRequestSerializer,
        responses={200: {"type": "array", "items": VECTOR_SCHEMA}, **error_responses(BODY_ERRORS)},
        parameters=[RETRY_AFTER],
        summary="Embed (TEI contract)",
    )
    async def post(self, request: Request) -> Response:
        return await self.answer(endpoints.tei_embed)


class GetVectorView(EmbeddingView):
    """The write-up's GET endpoint, answered through the batcher."""

    endpoint = "get_vector"
    takes_body = False

    @extend_schema(
        parameters=[OpenApiParameter("sentence", str, required=True), RETRY_AFTER],
        responses={
            200: inline_serializer("VectorResponse", {"vector": VECTOR_LIST}),
            **error_responses(QUERY_ERRORS),
        },
        summary="One sentence's vector (write-up contract)",
    )
    async def get(self, request: Request) -> Response:
        return await self.answer(endpoints.get_vector)


class SimilarityView(EmbeddingView):
    """Cosine similarity of a source sentence against each of several sentences."""

    endpoint = "similarity"

    @extend_schema(
        request=SimilarityRequestSerializer,
        responses={200: VECTOR_SCHEMA, **error_responses(BODY_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    async def post(self, request: Request) -> Response:
        return await self.answer(endpoints.similarity)


class ModelsView(APIView):
    """OpenAI model list."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **error_responses(KEY_ERRORS)})
    async def get(self, request: Request) -> Response:
        await auth.authorize(request.headers.get("Authorization"))
        registry = conf.get_registry()
        return Response(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "embedservice"} for name in registry.names
                ],
            }
        )


def describe_engine(engine: object) -> dict:
    from ..engine.registry import Engine

    assert isinstance(engine, Engine)
    cfg = engine.config
    described: dict = {
        "id": engine.name,
        "path": cfg.path,
        "loaded": engine.loaded,
        "backend": cfg.backend,
        "dtype": cfg.dtype,
        "batching": {
            "max_batch_size": cfg.batcher.max_batch_size,
            "max_batch_tokens": cfg.batcher.max_batch_tokens,
            "max_queue_inputs": cfg.batcher.max_queue_inputs,
            "queue_timeout_ms": cfg.batcher.queue_timeout_ms,
            "max_wait_ms": cfg.batcher.max_wait_ms,
        },
    }
    if engine.loaded:
        encoder = engine.encoder
        described.update(
            dimensions=encoder.dimensions,
            max_input_tokens=encoder.max_seq_length,
            device=encoder.device,
            normalized=encoder.normalizes,
            model_calls=encoder.model_calls,
        )
        if cfg.backend == "torch":
            described["torch_linear"] = encoder.torch_linear  # null: runs eagerly (not traced)
    counters = [b.counters for b in engine.batchers()]
    described["stats"] = {
        "requests": sum(c.requests for c in counters),
        "texts": sum(c.texts for c in counters),
        "batches": sum(c.batches for c in counters),
        "rejected_queue_full": sum(c.rejected_full for c in counters),
        "expired": sum(c.expired for c in counters),
        "cancelled": sum(c.cancelled for c in counters),
        "failed": sum(c.failed for c in counters),
        "queued_inputs": sum(b.queued_inputs for b in engine.batchers()),
    }
    return described


class InfoView(APIView):
    """What this service runs: models, dimensions, devices, batching limits, counters."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    async def get(self, request: Request) -> Response:
        registry = conf.get_registry()
        limits = conf.limits()
        return Response(
            {
                "version": __version__,
                "default_model": registry.default_name,
                "models": [describe_engine(e) for e in registry.engines()],
                "limits": {
                    "max_inputs_per_request": limits.max_inputs_per_request,
                    "max_input_chars": limits.max_input_chars,
                    "max_body_bytes": limits.max_body_bytes,
                },
                "libraries": {name: version(name) for name in ("torch", "sentence-transformers", "django")},
                "draining": lifecycle.is_draining(),
                "pid": os.getpid(),
            }
        )


class HealthView(APIView):
    """Liveness: the process answers."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    async def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(APIView):
    """Readiness: every model loaded and healthy, and not draining."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    async def get(self, request: Request) -> Response:
        problems = []
        if lifecycle.is_draining():
            problems.append("draining")
        for engine in conf.get_registry().engines():
            if not engine.loaded:
                problems.append(f"{engine.name}: not loaded")
            elif not all(b.healthy for b in engine.batchers()):
                problems.append(f"{engine.name}: model call past its deadline")
        if problems:
            return Response(
                {"status": "unavailable", "problems": problems},
                status=503,
                headers={"Retry-After": str(conf.limits().retry_after_s)},
            )
        return Response({"status": "ready"})
