"""The one table from domain errors to answers (status, type, code, message), for HTTP and WebSocket."""

from __future__ import annotations

import logging
from http import HTTPStatus

from django.core.exceptions import DisallowedHost, PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from ..engine import errors as engine

logger = logging.getLogger(__name__)


class ApiError(drf.APIException):
    """An answer that is an error: OpenAI's envelope, with `param` naming the field at fault."""

    status_code = 400
    default_detail = "invalid request"
    default_code = "invalid_request"
    error_type = "invalid_request_error"

    def __init__(self, message: str | None = None, *, param: str | None = None, code: str | None = None) -> None:
        message = printable(str(message or self.default_detail))
        super().__init__(message, code or self.default_code)
        self.message = message
        self.param = None if param is None else printable(param)
        self.code = code or self.default_code
        self.retry_after_s: int | None = None

    def envelope(self) -> dict:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


def printable(text: str) -> str:
    """Escape what UTF-8 cannot carry (a lone surrogate echoed from the request), so every error renders."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class InvalidRequest(ApiError):
    pass


class InputTooLong(ApiError):
    status_code = 422
    default_detail = "input is longer than the model accepts and truncation is off"
    default_code = "input_too_long"


class PayloadTooLarge(ApiError):
    status_code = 413
    default_detail = "request body is larger than the limit"
    default_code = "payload_too_large"

    @classmethod
    def over(cls, limit: int) -> PayloadTooLarge:
        """The body read so far passed `limit` bytes."""
        return cls(f"request body is larger than {limit} bytes")

    @classmethod
    def declared(cls, length: int, limit: int) -> PayloadTooLarge:
        """The Content-Length header says `length` bytes, over `limit`."""
        return cls(f"request body has {length} bytes; the limit is {limit}")

    @classmethod
    def refuse_declared(cls, declared: str | None, limit: int) -> None:
        """Raise at once when the Content-Length header already says the body is over `limit`."""
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise cls.declared(int(declared), limit)


class MalformedHttp(ApiError):
    """The server's HTTP parser refused the bytes before any route saw them (request line, headers, framing)."""

    default_detail = "the request is not valid HTTP/1.1"
    default_code = "malformed_http"


class RequestTimeout(ApiError):
    status_code = 408
    default_detail = "the request did not arrive in time"
    default_code = "request_timeout"

    @classmethod
    def after(cls, seconds: float) -> RequestTimeout:
        """The request line, headers and body had not all arrived `seconds` after the server began reading it."""
        return cls(f"the request's line, headers and body did not all arrive within {seconds:g} s")


class ModelNotFound(ApiError):
    status_code = 404
    default_detail = "model not found"
    default_code = "model_not_found"


class Unauthorized(ApiError):
    status_code = 401
    default_detail = "missing or invalid API key"
    default_code = "invalid_api_key"
    error_type = "authentication_error"


class RouteNotFound(ApiError):
    status_code = 404
    default_detail = "no such route"
    default_code = "not_found"


class NotAcceptable(ApiError):
    status_code = 406
    default_detail = "this route answers application/json only"
    default_code = "not_acceptable"


class Forbidden(ApiError):
    status_code = 403
    default_detail = "not allowed"
    default_code = "permission_denied"
    error_type = "permission_error"


class MethodNotAllowed(ApiError):
    status_code = 405
    default_detail = "method not allowed"
    default_code = "method_not_allowed"


class UnsupportedMediaType(ApiError):
    status_code = 415
    default_detail = "send the body as application/json"
    default_code = "unsupported_media_type"


class Overloaded(ApiError):
    status_code = 429
    default_detail = "too many inputs are waiting; retry shortly"
    default_code = "queue_full"
    error_type = "rate_limit_error"


class Unavailable(ApiError):
    status_code = 503
    default_detail = "the service cannot answer right now; retry shortly"
    default_code = "unavailable"
    error_type = "server_error"


class ModelFailed(ApiError):
    status_code = 500
    default_detail = "the model failed on this input"
    default_code = "model_error"
    error_type = "server_error"


class InternalError(ApiError):
    status_code = 500
    default_detail = "internal error"
    default_code = "internal_error"
    error_type = "server_error"


def from_engine(exc: engine.EngineError, retry_after_s: int) -> ApiError:
    """Map an engine error to its answer."""
    if isinstance(exc, engine.UnknownModel):
        return ModelNotFound(str(exc), param="model")
    if isinstance(exc, engine.QueueFull):
        err: ApiError = Overloaded(str(exc))
    elif isinstance(exc, engine.QueueTimeout):
        err = Unavailable(str(exc), code="queue_timeout")
    elif isinstance(exc, engine.EngineStuck):
        err = Unavailable(str(exc), code="model_stuck")
    elif isinstance(exc, engine.EngineStopped):
        err = Unavailable(str(exc), code="draining")
    elif isinstance(exc, engine.ModelLoadError):
        err = Unavailable(str(exc), code="model_not_ready")
    elif isinstance(exc, engine.EncodeFailed):
        return ModelFailed(str(exc))
    else:
        return InternalError(type(exc).__name__)
    err.retry_after_s = retry_after_s
    return err


def _first_validation_error(detail: object, path: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            return _first_validation_error(value, name)
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], path)
    return (path or None), str(detail)


def as_api_error(exc: Exception) -> ApiError | None:
    """Return the ApiError for any exception the API knows how to answer, else None."""
    from .. import conf

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, engine.EngineError):
        return from_engine(exc, conf.limits().retry_after_s)
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge.over(conf.limits().max_body_bytes)
    if isinstance(exc, drf.ValidationError):
        param, message = _first_validation_error(exc.detail)
        return InvalidRequest(f"{param}: {message}" if param else message, param=param)
    if isinstance(exc, drf.ParseError):
        return InvalidRequest(f"body is not valid JSON: {exc.detail}", code="invalid_json")
    if isinstance(exc, drf.UnsupportedMediaType):
        return UnsupportedMediaType(f"unsupported media type {exc.detail}; send application/json")
    if isinstance(exc, drf.MethodNotAllowed):
        return MethodNotAllowed(str(exc.detail))
    if isinstance(exc, drf.NotFound):
        return RouteNotFound(str(exc.detail))
    if isinstance(exc, Http404):  # e.g. DRF's answer to a ?format= it has no renderer for
        return RouteNotFound(str(exc) or "not found: this route answers ?format=json or no ?format at all")
    if isinstance(exc, drf.NotAcceptable):
        return NotAcceptable("cannot answer in any type the Accept header allows; this route answers application/json")
    if isinstance(exc, (drf.PermissionDenied, PermissionDenied)):
        return Forbidden(str(exc) or "not allowed")
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return Unauthorized(str(exc.detail))
    if isinstance(exc, drf.Throttled):
        err = Overloaded(str(exc.detail), code="rate_limited")
        err.retry_after_s = int(exc.wait or 1)
        return err
    return None


def error_headers(err: ApiError) -> dict[str, str]:
    """Retry-After on 429/503; on a model error, tell OpenAI SDKs not to retry the same failing input."""
    if err.retry_after_s is not None:
        return {"Retry-After": str(err.retry_after_s)}
    if isinstance(err, ModelFailed):
        return {"X-Should-Retry": "false"}
    if isinstance(err, PayloadTooLarge):
        return {"Connection": "close"}  # the rest of the body is not read: the connection cannot go on
    return {}


def raw_http_answer(err: ApiError, request_id: str) -> bytes:
    """The whole HTTP/1.1 answer for `err`, for a server writing on the socket itself: the JSON envelope,
    its request id, and `Connection: close` (the server answers this way only where it stops reading)."""
    import orjson

    body = orjson.dumps(err.envelope())
    head = (
        f"HTTP/1.1 {err.status_code} {HTTPStatus(err.status_code).phrase}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nx-content-type-options: nosniff\r\n"
        f"x-request-id: {request_id}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's EXCEPTION_HANDLER: every error becomes OpenAI's envelope; never a traceback."""
    err = as_api_error(exc)
    if err is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        err = InternalError()
    return Response(err.envelope(), status=err.status_code, headers=error_headers(err))


def json_error(err: ApiError) -> JsonResponse:
    """Return a plain Django response for errors raised outside DRF views."""
    response = JsonResponse(err.envelope(), status=err.status_code)
    for key, value in error_headers(err).items():
        response[key] = value
    return response


def handler404(request: object, exception: Exception | None = None) -> JsonResponse:
    return json_error(RouteNotFound(f"no route {getattr(request, 'path', '')!r}"))


def handler500(request: object) -> JsonResponse:
    return json_error(InternalError())


def handler400(request: object, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return json_error(as_api_error(exception))  # type: ignore[arg-type]
    if isinstance(exception, DisallowedHost):
        from .hosts import disallowed_host

        meta = getattr(request, "META", {})
        return json_error(disallowed_host(meta["HTTP_HOST"] if "HTTP_HOST" in meta else meta.get("SERVER_NAME", "")))
    return json_error(InvalidRequest("bad request"))
