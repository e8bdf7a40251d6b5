"""WebSocket embeddings: JSON frames in, vectors out, several requests in flight per socket, same core as HTTP."""

from __future__ import annotations

import asyncio
import base64
import importlib
import inspect
import logging
from types import ModuleType

import numpy as np
import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import conf, lifecycle
from .api import accounting, core
from .api.errors import ApiError, InternalError, InvalidRequest, Overloaded, PayloadTooLarge, Unauthorized, as_api_error
from .api.serializers import EmbeddingsRequestSerializer
from .engine.errors import EngineError, EngineStopped

logger = logging.getLogger(__name__)

# A socket whose key is refused closes with 4000 + the refusal's HTTP status (4000-4999 are the
# application's own, RFC 6455 7.4.2): 4401 for a wrong key, 4503 for a key the key store cannot check
# now (retry after the error frame's retry_after_s; the key itself may be fine).
CLOSE_UNAUTHORIZED = 4401
CLOSE_TRY_AGAIN = 4503
STATUS_CLIENT_GONE = 499
MAX_ID_CHARS = 256


def optional_module(name: str) -> ModuleType | None:
    """Return `vectors.<name>`, or None while that module does not exist."""
    qualified = f"{__package__}.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name != qualified:
            raise  # the module exists but cannot import something of its own
        return None


async def check_api_key(raw: str | None) -> str | None:
    """Return the key's identity via `vectors.auth.check_api_key`; keys are not required when that module is absent.

    The auth module raises (an exception the error table maps to 401, or 503) to refuse a key. The check
    takes nothing from the key's rate bucket: each embed frame is charged as it arrives (`check_rate`).
    """
    auth = optional_module("auth")
    if auth is None:
        return None
    check = auth.check_api_key
    if inspect.iscoroutinefunction(check):
        return await check(raw, charge=False)
    # A sync check may read API keys from the database: cross over the ORM wrapper.
    return await database_sync_to_async(check)(raw, charge=False)


def close_code(refusal: ApiError) -> int:
    """The close code for a socket whose key was refused: 4000 + the refusal's HTTP status."""
    return 4000 + refusal.status_code


def check_rate(identity: str | None) -> None:
    """Take one message from the key's rate bucket (`vectors.ratelimit`), as HTTP takes one per request.

    Raises:
        ApiError: the key is over its rate (429 with retry_after_s).
    """
    ratelimit = optional_module("ratelimit")
    if identity is not None and ratelimit is not None:
        ratelimit.check_rate(identity)


def bearer_token(scope: dict) -> str | None:
    """Return the key from the handshake's `Authorization: Bearer <key>` header, if any."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header = value.decode("latin1").strip()
            scheme, _, token = header.partition(" ")
            # Another scheme is passed on whole, so the check refuses it rather than it counting as "no key".
            return token.strip() if scheme.lower() == "bearer" else header
    return None


def frame_id(content: dict) -> str | int:
    """Return the frame's id: a string or an integer, echoed in its answer.

    Raises:
        InvalidRequest: the id is missing or of another type.
    """
    if "id" not in content or content["id"] is None:
        raise InvalidRequest("id: required; every frame needs an id to match its answer", param="id")
    value = content["id"]
    if isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
        # orjson reads an integer past 64 bits as a float: say why, rather than "not an integer".
        raise InvalidRequest("id: an integer id must fit in 64 bits; send a larger one as a string", param="id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRequest("id: must be a string or an integer", param="id")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise InvalidRequest(f"id: has {len(value)} characters; the limit is {MAX_ID_CHARS}", param="id")
    return value


def echoed_id(content: object) -> object:
    """Return the id to put on an error frame: whatever scalar the client sent, else null."""
    if isinstance(content, dict) and isinstance(content.get("id"), (str, int, float)):
        return content["id"]
    return None


def error_frame(ident: object, err: ApiError) -> dict:
    """Shape an error answer: OpenAI's envelope, the HTTP-equivalent status, Retry-After as a field."""
    frame = {"id": ident, **err.envelope(), "status": err.status_code}
    if err.retry_after_s is not None:
        frame["retry_after_s"] = err.retry_after_s
    return frame


def metric_model(model: object) -> str:
    """Return the served model's name, or "unknown": a client's typo must not grow a metric's label set."""
    if model is not None and not isinstance(model, str):
        return "unknown"
    try:
        return core.engine_for(model).name
    except EngineError:
        return "unknown"


def encode_rows(vectors: np.ndarray, encoding: str) -> list:
    if encoding == "base64":
        return [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in vectors]
    return list(vectors)


class EmbedConsumer(AsyncJsonWebsocketConsumer):
    """`ws/embed/`: each frame `{"id", "input", ...}` runs in its own task; answers go out as the batcher finishes."""

    endpoint = "ws"

    async def connect(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.identity: str | None = None
        self.authenticated = False
        await self.accept()
        header_key = bearer_token(self.scope)
        err = await self._authenticate(header_key)
        if err is None:
            return
        if header_key is not None:
            await self.send_json(error_frame(None, err))
            await self.close(close_code(err))
        # No key in the handshake and keys are required: wait for a {"type": "auth"} frame.

    async def disconnect(self, code: int) -> None:
        # The caller is gone: cancel its requests so the batcher skips their work.
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- frames in ------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: object) -> None:
        if text_data is None:
            await self.send_json(
                error_frame(None, InvalidRequest("binary frames are not accepted; send JSON text", code="binary_frame"))
            )
            return
        limit = conf.limits().max_body_bytes
        # The limit is in bytes, as for HTTP bodies; a character is up to 4 bytes of UTF-8.
        if len(text_data) > limit or (len(text_data) * 4 > limit and len(text_data.encode()) > limit):
            await self.send_json(error_frame(None, PayloadTooLarge(f"frame is larger than {limit} bytes")))
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError as exc:
            await self.send_json(
                error_frame(None, InvalidRequest(f"frame is not valid JSON: {exc}", code="invalid_json"))
            )
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: object, **kwargs: object) -> None:
        stopwatch = core.Stopwatch()
        if not isinstance(content, dict):
            await self.send_json(error_frame(None, InvalidRequest("a frame must be a JSON object")))
            return
        kind = content.get("type", "embed")
        if kind == "auth":
            await self._auth_frame(content)
            return
        try:
            if kind != "embed":
                raise InvalidRequest("type: must be 'embed' (the default) or 'auth'", param="type")
            ident = frame_id(content)
            if not self.authenticated:
                raise Unauthorized('send {"type": "auth", "api_key": "..."} or an Authorization header first')
            check_rate(self.identity)
            limit = conf.limits().ws_max_inflight
            if len(self.tasks) >= limit:
                raise Overloaded(
                    f"{limit} requests are already in flight on this socket; wait for an answer first",
                    code="too_many_in_flight",
                )
            params = EmbeddingsRequestSerializer(data=content)
            params.is_valid(raise_exception=True)
        except Exception as exc:
            err = as_api_error(exc)
            if err is None:
                raise
            await self.send_json(error_frame(echoed_id(content), err))
            self._record(content.get("model"), stopwatch, err.status_code, err.code)
            return
        data = params.validated_data
        job = core.EmbedJob(data["input"], model=data.get("model"), truncate=True, dimensions=data.get("dimensions"))
        task = asyncio.create_task(self._embed(ident, job, data["encoding_format"], stopwatch))
        self.tasks.add(task)
        lifecycle.frame_started()
        task.add_done_callback(self._task_done)

    # -- one request ----------------------------------------------------------------------

    async def _embed(self, ident: str | int, job: core.EmbedJob, encoding: str, stopwatch: core.Stopwatch) -> None:
        outcome: core.EmbedOutcome | None = None
        try:
            if lifecycle.is_draining():
                raise EngineStopped("the service is draining and takes no new work")
            outcome = await core.embed(job)
            answer = {
                "id": ident,
                "embeddings": encode_rows(outcome.vectors, encoding),
                "model": outcome.model,
                "usage": {"prompt_tokens": outcome.prompt_tokens, "total_tokens": outcome.prompt_tokens},
                "timing": {
                    "queue_ms": round(outcome.queue_ms, 2),
                    "inference_ms": round(outcome.inference_ms, 2),
                    "total_ms": round(stopwatch.ms(), 2),
                    "batch_size": outcome.batch_size,
                },
            }
            status, code = 200, ""
        except asyncio.CancelledError:
            self._record(job.model, stopwatch, STATUS_CLIENT_GONE, "client_closed", inputs=len(job.inputs))
            raise
        except Exception as exc:
            err = as_api_error(exc)
            if err is None:
                logger.exception("unhandled error answering a WebSocket frame", exc_info=exc)
                err = InternalError()
            answer, status, code = error_frame(ident, err), err.status_code, err.code
        try:
            await self.send_json(answer)
        except asyncio.CancelledError:
            self._record(job.model, stopwatch, STATUS_CLIENT_GONE, "client_closed", outcome, len(job.inputs))
            raise
        except OSError:
            # uvicorn raises this when the connection dropped as the answer was ready, before the consumer's
            # disconnect could cancel the task (daphne drops such a send): the caller is gone, the row stays.
            status, code = STATUS_CLIENT_GONE, "client_closed"
        self._record(job.model, stopwatch, status, code, outcome, len(job.inputs))

    def _task_done(self, task: asyncio.Task) -> None:
        lifecycle.frame_finished()
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("WebSocket request task failed", exc_info=task.exception())

    def _record(
        self,
        model: object,
        stopwatch: core.Stopwatch,
        status: int,
        error_code: str,
        outcome: core.EmbedOutcome | None = None,
        inputs: int = 0,
    ) -> None:
        """Account one message as the HTTP views account one request: metrics and the request log."""
        client = self.scope.get("client") or ("",)
        accounting.account(
            endpoint=self.endpoint,
            status=status,
            total_ms=stopwatch.ms(),
            outcome=outcome,
            model=metric_model(model),
            error_code=error_code,
            caller=self.identity or str(client[0] or ""),
            request_id=accounting.new_request_id(),
            inputs=inputs,
        )

    # -- API keys -------------------------------------------------------------------------

    async def _authenticate(self, raw: str | None) -> ApiError | None:
        """Check `raw`; remember the identity and return None, or return the refusal."""
        try:
            self.identity = await check_api_key(raw)
        except Exception as exc:
            err = as_api_error(exc)
            if err is None:
                raise
            return err
        self.authenticated = True
        return None

    async def _auth_frame(self, content: dict) -> None:
        raw = content.get("api_key")
        if not isinstance(raw, str) or not raw:
            err = InvalidRequest("api_key: must be a non-empty string", param="api_key")
            await self.send_json(error_frame(echoed_id(content), err))
            return
        err = await self._authenticate(raw)
        if err is not None:
            await self.send_json(error_frame(echoed_id(content), err))
            await self.close(close_code(err))
            return
        await self.send_json({"id": echoed_id(content), "type": "auth", "authenticated": True})

    # -- JSON -----------------------------------------------------------------------------

    @classmethod
    async def decode_json(cls, text_data: str) -> object:
        return orjson.loads(text_data)

    @classmethod
    async def encode_json(cls, content: object) -> str:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY).decode()
