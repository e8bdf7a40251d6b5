"""OpenAPI pieces the views declare: the error envelope, and which errors each endpoint can answer."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True, help_text="The request field at fault, when there is one.")
    code = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """OpenAI's error envelope: every error answer of the API has this shape."""

    error = ErrorDetailSerializer()


# What each status means here (vectors.api.errors is the table that produces them).
ERROR_MEANINGS = {
    400: "Malformed JSON, wrong types, empty or too many inputs, a text too long in characters.",
    401: "Missing, unknown or revoked API key.",
    404: "No served model has this name.",
    413: "The body is larger than EMBED_MAX_BODY_BYTES.",
    415: "The body is not application/json.",
    422: "An input is longer than the model takes and truncate is false.",
    429: "Too many inputs are queued, or this key's rate limit is reached; retry after Retry-After seconds.",
    500: "The model failed on this input (only this request fails).",
    503: "Queue deadline passed, model not ready, or the service is draining; retry after Retry-After seconds.",
}
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    location=OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before retrying.",
)

OPENAI_ERRORS = (400, 401, 404, 413, 415, 429, 500, 503)  # it always truncates: no 422
BODY_ERRORS = (400, 401, 404, 413, 415, 422, 429, 500, 503)
QUERY_ERRORS = (400, 401, 429, 500, 503)
KEY_ERRORS = (401, 429)


def error_responses(statuses: tuple[int, ...]) -> dict[int, OpenApiResponse]:
    """Return `extend_schema` responses for these error statuses, each with the error envelope."""
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[status]) for status in statuses}
