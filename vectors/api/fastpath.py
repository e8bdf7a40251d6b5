"""A lean ASGI route for the hottest embedding endpoints, in front of Django's handler.

Same endpoint functions, serializers, error table, content negotiation and accounting as the DRF
views; it only skips Django's per-request machinery (middleware, signals and their thread hops),
which on a 2-core machine competes with the model for the same cores. Everything else falls through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson

from .. import auth, conf, lifecycle
from ..engine.errors import EngineStopped
from . import accounting, core, endpoints
from .errors import ApiError, InternalError, InvalidRequest, PayloadTooLarge, as_api_error, error_headers
from .hosts import check_host
from .negotiation import joined_header, negotiate
from .parsers import check_media_type, parse_json, parse_query

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
CLIENT_CLOSED = 499

# (method, path) -> (endpoint name for metrics and the log, handler, takes a JSON body)
ROUTES: dict[tuple[str, str], tuple[str, endpoints.Handler, bool]] = {
    ("POST", "/v1/embeddings"): ("openai", endpoints.openai_embeddings, True),
    ("POST", "/embed"): ("tei", endpoints.tei_embed, True),
    ("POST", "/similarity"): ("similarity", endpoints.similarity, True),
    ("GET", "/get_vector"): ("get_vector", endpoints.get_vector, False),
    ("GET", "/get_vector_simple"): ("get_vector", endpoints.get_vector, False),
    ("GET", "/get_vector_async"): ("get_vector", endpoints.get_vector, False),
}


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


# Set in a request's scope by a server that answered the request itself while the application was still
# reading its body (uvicorn: the read timeout's 408, a malformed body's 400). The application then sees the
# client gone, but the request is the server's to log, with the status it answered, not a 499 of ours.
ANSWERED_BY_SERVER = "embedservice.answered_by_server"


def read_query(raw: bytes) -> tuple[dict[str, str], InvalidRequest | None]:
    """The query's parameters, and its refusal if it is not UTF-8: raised only once the API key has passed
    (a wrong key is a 401 whatever else was sent), while `?format=` is read before it, as DRF does. One
    parse for a good query; a bad one is parsed again, its bad bytes as U+FFFD."""
    if not raw:
        return {}, None
    try:
        return parse_query(raw), None
    except InvalidRequest as refused:
        return parse_query(raw, strict=False), refused


def client_host(scope: dict) -> str:
    """The client's address as the ASGI server gives it ('' when it gives none)."""
    return (scope.get("client") or ("",))[0] or ""


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    # A Content-Length over `limit` was refused before (FastEmbeddingApp.__call__); this holds a chunked one.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge.over(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class FastEmbeddingApp:
    """ASGI app: answer the hot embedding routes directly, hand everything else to `fallback`."""

    def __init__(self, fallback: Callable[[dict, Receive, Send], Awaitable[None]]) -> None:
        self.fallback = fallback

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        limits = conf.limits()
        try:
            # First, on every route, as daphne's side does (vectors.daphne_server.limit_request_bodies):
            # a body declared over the limit is not read, whoever sends it.
            PayloadTooLarge.refuse_declared(header(scope, b"content-length"), limits.max_body_bytes)
        except PayloadTooLarge as exc:
            await send_error(scope, send, exc)
            return
        route = ROUTES.get((scope.get("method", ""), scope.get("path", "")))
        if route is None or not limits.fast_path:
            await self.fall_back_within_limit(scope, receive, send)
        else:
            await self.handle(route, scope, receive, send)

    async def fall_back_within_limit(self, scope: dict, receive: Receive, send: Send) -> None:
        """Hand a request to Django, holding its body to MAX_BODY_BYTES as it arrives.

        Django's ASGI handler reads a body of any size (spooled to disk) before a view can refuse it;
        a chunked body past the limit is cut off from it instead, and answered 413 here - before the
        view's key check, which Django runs only once the body is in. (On daphne, Twisted's side
        refuses it even earlier: vectors.daphne_server.limit_request_bodies.)
        """
        limit = conf.limits().max_body_bytes
        size = 0
        refused: PayloadTooLarge | None = None

        async def receive_within_limit() -> dict:
            nonlocal size, refused
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = PayloadTooLarge.over(limit)
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        await self.fallback(scope, receive_within_limit, send)
        if refused is not None:
            await send_error(scope, send, refused)

    async def handle(self, route: tuple, scope: dict, receive: Receive, send: Send) -> None:
        endpoint, handler, takes_body = route
        stopwatch = core.Stopwatch()
        request_id = header(scope, b"x-request-id") or accounting.new_request_id()
        outcome: core.EmbedOutcome | None = None
        caller = client_host(scope)
        watcher: asyncio.Task | None = None
        try:
            check_host(joined_header(scope, b"host"), scope.get("server"))  # as Django's CommonMiddleware does first
            query, bad_query = read_query(scope.get("query_string") or b"")
            negotiate(joined_header(scope, b"accept"), query)  # where DRF does: before the key and the body
            caller = await auth.authorize(header(scope, b"authorization")) or caller
            if takes_body:
                check_media_type(header(scope, b"content-type"))
                data = parse_json(await read_body(receive, conf.limits().max_body_bytes))
            elif bad_query is not None:
                raise bad_query  # after the key, as on DRF
            else:
                data = query
            if lifecycle.is_draining():
                raise EngineStopped("the service is draining and takes no new work")
            watcher = asyncio.ensure_future(watch_disconnect(receive, asyncio.current_task()))
            answer = await handler(data)
            outcome = answer.outcome
            status, payload, extra = 200, answer.payload, []
        except (ClientGone, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not (watcher and watcher.done()):
                raise  # cancelled by the server itself, not by a departed client
            if scope.get(ANSWERED_BY_SERVER):
                return  # the server answered it (and logged it) itself
            accounting.account(
                endpoint=endpoint,
                status=CLIENT_CLOSED,
                total_ms=stopwatch.ms(),
                outcome=None,
                error_code="client_closed",
                caller=caller,
                request_id=request_id,
            )
            return
        except Exception as exc:  # noqa: BLE001 - every error becomes the JSON envelope, never a traceback
            err = as_api_error(exc)
            if err is None:
                logger.exception("unhandled error on %s", scope.get("path"))
                err = InternalError()
            status, payload, extra = err.status_code, err.envelope(), list(error_headers(err).items())
        finally:
            if watcher is not None:
                watcher.cancel()
        total_ms = stopwatch.ms()
        # latin-1, as the request's headers were read: a client's X-Request-ID comes back byte for byte.
        timing = accounting.timing_headers(request_id, total_ms, outcome)
        await send_json(send, status, payload, [(k.encode(), v.encode("latin-1")) for k, v in [*timing, *extra]])
        error = payload.get("error") if status != 200 and isinstance(payload, dict) else None
        accounting.account(
            endpoint=endpoint,
            status=status,
            total_ms=total_ms,
            outcome=outcome,
            error_code=error.get("code", "") if isinstance(error, dict) else "",
            caller=caller,
            request_id=request_id,
        )


async def send_json(send: Send, status: int, payload: object, headers: list[tuple[bytes, bytes]]) -> None:
    """Send `payload` as the JSON answer, with `headers` after the content headers."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    content = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": [*content, *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_error(scope: dict, send: Send, error: PayloadTooLarge) -> None:
    """Answer `error` before any handler ran (a body over the limit), close the connection, log it."""
    stopwatch = core.Stopwatch()
    request_id = header(scope, b"x-request-id") or accounting.new_request_id()
    # connection: close - the rest of the body is not read
    headers = [(b"x-request-id", request_id.encode("latin-1")), (b"connection", b"close")]
    await send_json(send, error.status_code, error.envelope(), headers)
    caller = client_host(scope)
    log_refusal(scope.get("method", ""), scope.get("path", ""), error, request_id, caller, stopwatch.ms())


def log_refusal(method: str, path: str, error: ApiError, request_id: str, caller: str, total_ms: float) -> None:
    """Account a request refused before any handler ran (or while it read the body), when it was for an
    embedding route."""
    route = ROUTES.get((method, path))
    if route is not None:
        accounting.account(
            endpoint=route[0],
            status=error.status_code,
            total_ms=total_ms,
            outcome=None,
            error_code=error.code,
            caller=caller,
            request_id=request_id,
        )


async def watch_disconnect(receive: Receive, task: asyncio.Task | None) -> None:
    """Cancel `task` when the client disconnects while its request is being answered."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return
