"""The client side of one endpoint: a Session sends texts and returns a Reply; HttpSession does it over httpx."""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

CONNECT_ERROR = "connect_error"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Reply:
    """What came back for one request: an HTTP status, or why none came, and the server's timing split."""

    status: int | None
    error: str | None = None  # CONNECT_ERROR or TIMEOUT when status is None
    queue_ms: float | None = None
    inference_ms: float | None = None
    batch_size: int | None = None


class Session(Protocol):
    """Open connections to one endpoint; `call` may be awaited by many tasks at once."""

    async def call(self, texts: Sequence[str]) -> Reply: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request to make: method, path and either a JSON body (bytes) or query parameters."""

    method: str
    path: str
    body: bytes | None = None
    params: dict[str, str] | None = None


BuildCall = Callable[[Sequence[str]], HttpCall]


def _float(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def reply_from(response: httpx.Response) -> Reply:
    """Return the status and the server's x-queue-time / x-inference-time / x-batch-size headers."""
    headers = response.headers
    batch = _float(headers.get("x-batch-size"))
    return Reply(
        status=response.status_code,
        queue_ms=_float(headers.get("x-queue-time")),
        inference_ms=_float(headers.get("x-inference-time")),
        batch_size=int(batch) if batch is not None else None,
    )


def allow_open_files(connections: int, spare: int = 64) -> None:
    """Raise this process's soft open-file limit (up to the hard one) so `connections` sockets fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )


def quiet_http_logs() -> None:
    """Keep httpx from logging every request at INFO: thousands of lines a second would be the generator's work."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def http_client(base_url: str, connections: int, timeout_s: float) -> httpx.AsyncClient:
    """Return an AsyncClient keeping up to `connections` keep-alive connections to `base_url`."""
    quiet_http_logs()
    allow_open_files(connections)
    return httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=None),
        # A request waiting for a free connection is part of the load, not a failure: no pool timeout.
        timeout=httpx.Timeout(timeout_s, pool=None),
        trust_env=False,  # a proxy from the environment must never sit between us and the target
        headers={"user-agent": "embedservice-benchmark"},
    )


class HttpSession:
    """A Session over one shared httpx AsyncClient; `build` turns texts into the endpoint's request."""

    def __init__(self, client: httpx.AsyncClient, build: BuildCall) -> None:
        self.client = client
        self.build = build

    async def call(self, texts: Sequence[str]) -> Reply:
        call = self.build(texts)
        headers = {"content-type": "application/json"} if call.body is not None else None
        try:
            response = await self.client.request(
                call.method, call.path, content=call.body, params=call.params, headers=headers
            )
        except httpx.TimeoutException:
            return Reply(None, TIMEOUT)
        except httpx.TransportError:
            return Reply(None, CONNECT_ERROR)
        return reply_from(response)

    async def aclose(self) -> None:
        await self.client.aclose()
