"""The client side of one endpoint: a Session sends texts and returns a Reply; HttpSession does it over httpx."""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
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
# An endpoint's `open`: (base URL, connections, timeout_s[, headers]) -> Session.
OpenSession = Callable[..., Session]


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


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    # Building a context loads the CA bundle (milliseconds); 1000 connections share one.
    return ssl.create_default_context()


def connection(
    base_url: str,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """Return an AsyncClient holding ONE keep-alive connection to `base_url`, sending `headers` on every request.

    One client per connection instead of one pool of N: httpcore's pool scans every connection
    on each request, which at hundreds of connections costs the load generator more CPU than the
    requests themselves - CPU taken from the server it measures on a small machine.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=None),
        timeout=httpx.Timeout(timeout_s),
        trust_env=False,  # a proxy from the environment must never sit between us and the target
        verify=_tls(),
        headers={"user-agent": "embedservice-benchmark", **(headers or {})},
        transport=transport,
    )


class HttpSession:
    """A Session over up to `connections` keep-alive connections; `build` turns texts into the request.

    A request waits for a free connection when all are busy (open loop only: a closed loop has one
    per client); that wait is part of its latency, never a failure.
    """

    def __init__(
        self,
        base_url: str,
        connections: int,
        timeout_s: float,
        build: BuildCall,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        quiet_http_logs()
        allow_open_files(connections)
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.build = build
        self.transport = transport
        self.headers = headers
        self.slots = asyncio.Semaphore(connections)
        self.idle: list[httpx.AsyncClient] = []  # a stack: the most recently used connection is reused first
        self.opened: list[httpx.AsyncClient] = []

    def _checkout(self) -> httpx.AsyncClient:
        if self.idle:
            return self.idle.pop()
        client = connection(self.base_url, self.timeout_s, self.transport, self.headers)
        self.opened.append(client)
        return client

    async def call(self, texts: Sequence[str]) -> Reply:
        call = self.build(texts)
        headers = {"content-type": "application/json"} if call.body is not None else None
        async with self.slots:
            client = self._checkout()
            try:
                response = await client.request(
                    call.method, call.path, content=call.body, params=call.params, headers=headers
                )
            except httpx.TimeoutException:
                return Reply(None, TIMEOUT)
            except httpx.TransportError:
                return Reply(None, CONNECT_ERROR)
            finally:
                self.idle.append(client)
        return reply_from(response)

    async def aclose(self) -> None:
        for client in self.opened:
            await client.aclose()
        self.idle.clear()
        self.opened.clear()
