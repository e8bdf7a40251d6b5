"""Thin async views: validate -> await the shared core -> shape the response -> record it."""

from __future__ import annotations

import base64
import uuid
from importlib.metadata import version

import numpy as np
from adrf.views import APIView
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from .. import __version__, conf, lifecycle, metrics
from ..engine.errors import EngineStopped
from . import core
from .errors import PayloadTooLarge
from .serializers import (
    EmbeddingsRequestSerializer,
    EmbedRequestSerializer,
    GetVectorQuerySerializer,
    Inputs,
    SimilarityRequestSerializer,
)

VECTOR_LIST = serializers.ListField(child=serializers.FloatField())


class EmbeddingView(APIView):
    """Common flow of every embedding endpoint: limits, timing headers, metrics and logging."""

    endpoint = "embed"

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        super().initial(request, *args, **kwargs)
        self.stopwatch = core.Stopwatch()
        self.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        limit = conf.limits().max_body_bytes
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body has {declared} bytes; the limit is {limit}")
        if request.method == "POST":
            try:
                request._request.body  # noqa: B018 - reading enforces the size limit on bodies without a length
            except RequestDataTooBig:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes") from None

    async def run(self, job: core.EmbedJob) -> core.EmbedOutcome:
        if lifecycle.is_draining():
            raise EngineStopped("the service is draining and takes no new work")
        self.job = job
        self.outcome = await core.embed(job)
        return self.outcome

    def finalize_response(self, request: Request, response: Response, *args: object, **kwargs: object) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        stopwatch = getattr(self, "stopwatch", None)
        if stopwatch is None:
            return response
        total_ms = stopwatch.ms()
        outcome: core.EmbedOutcome | None = getattr(self, "outcome", None)
        response["x-request-id"] = self.request_id
        response["x-total-time"] = f"{total_ms:.2f}"
        model = outcome.model if outcome else (getattr(getattr(self, "job", None), "model", None) or "")
        if outcome is not None:
            response["x-queue-time"] = f"{outcome.queue_ms:.2f}"
            response["x-inference-time"] = f"{outcome.inference_ms:.2f}"
            response["x-batch-size"] = str(outcome.batch_size)
        metrics.observe_request(
            self.endpoint, model, response.status_code, total_ms, outcome.queue_ms if outcome else None
        )
        return response


def openai_item(index: int, row: np.ndarray, encoding: str) -> dict:
    if encoding == "base64":
        return {
            "object": "embedding",
            "index": index,
            "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode(),
        }
    return {"object": "embedding", "index": index, "embedding": row}


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
            )
        },
        summary="Create embeddings (OpenAI contract)",
    )
    async def post(self, request: Request) -> Response:
        params = EmbeddingsRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        outcome = await self.run(
            core.EmbedJob(data["input"], model=data.get("model"), truncate=True, dimensions=data.get("dimensions"))
        )
        encoding = data["encoding_format"]
        return Response(
            {
                "object": "list",
                "data": [openai_item(i, row, encoding) for i, row in enumerate(outcome.vectors)],
                "model": outcome.model,
                "usage": {"prompt_tokens": outcome.prompt_tokens, "total_tokens": outcome.prompt_tokens},
            }
        )


class EmbedView(EmbeddingView):
    """TEI-compatible embed: a list of vectors."""

    endpoint = "tei"

    @extend_schema(
        request=EmbedRequestSerializer,
        responses={200: serializers.ListField(child=VECTOR_LIST)},
        summary="Embed (TEI contract)",
    )
    async def post(self, request: Request) -> Response:
        params = EmbedRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        outcome = await self.run(
            core.EmbedJob(
                data["inputs"],
                model=data.get("model"),
                truncate=data["truncate"],
                normalize=data["normalize"],
                dimensions=data.get("dimensions"),
                param="inputs",
            )
        )
        return Response(outcome.vectors)


class GetVectorView(EmbeddingView):
    """The write-up's GET endpoint, answered through the batcher."""

    endpoint = "get_vector"

    @extend_schema(
        parameters=[OpenApiParameter("sentence", str, required=True)],
        responses={200: inline_serializer("VectorResponse", {"vector": VECTOR_LIST})},
        summary="One sentence's vector (write-up contract)",
    )
    async def get(self, request: Request) -> Response:
        params = GetVectorQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        outcome = await self.run(core.EmbedJob(Inputs(texts=[params.validated_data["sentence"]]), param="sentence"))
        return Response({"vector": outcome.vectors[0]})


class SimilarityView(EmbeddingView):
    """Cosine similarity of a source sentence against each of several sentences."""

    endpoint = "similarity"

    @extend_schema(
        request=SimilarityRequestSerializer, responses={200: serializers.ListField(child=serializers.FloatField())}
    )
    async def post(self, request: Request) -> Response:
        params = SimilarityRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        sentences = data["inputs"]["sentences"].texts
        texts = [data["inputs"]["source_sentence"], *sentences]
        outcome = await self.run(
            core.EmbedJob(
                Inputs(texts=texts), model=data.get("model"), truncate=data["truncate"], normalize=True, param="inputs"
            )
        )
        scores = outcome.vectors[1:] @ outcome.vectors[0]
        return Response([float(s) for s in scores])


class ModelsView(APIView):
    """OpenAI model list."""

    @extend_schema(responses={200: serializers.DictField()})
    async def get(self, request: Request) -> Response:
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

    @extend_schema(responses={200: serializers.DictField()})
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
            }
        )


class HealthView(APIView):
    """Liveness: the process answers."""

    @extend_schema(responses={200: serializers.DictField()})
    async def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(APIView):
    """Readiness: every model loaded and healthy, and not draining."""

    @extend_schema(responses={200: serializers.DictField(), 503: serializers.DictField()})
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
