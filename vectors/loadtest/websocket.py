"""The WebSocket side of the load generator: a Session multiplexing frames over a few ws/embed/ sockets."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Mapping, Sequence

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from .client import CONNECT_ERROR, TIMEOUT, OpenSession, Reply, Session


def ws_url(base_url: str) -> str:
    """Return the ws:// (or wss://) URL of ws/embed/ on the server at `base_url`."""
    scheme, sep, rest = base_url.rstrip("/").partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}{sep}{rest}/ws/embed/"


def reply_of(frame: dict) -> Reply:
    """Return the Reply for one answer frame: its status (200 unless an error frame) and timing split."""
    timing = frame.get("timing") or {}
    return Reply(
        status=int(frame.get("status", 200)),
        queue_ms=timing.get("queue_ms"),
        inference_ms=timing.get("inference_ms"),
        batch_size=timing.get("batch_size"),
    )


class _Socket:
    """One connection: frames go out as they come, answers are matched to their callers by id."""

    def __init__(self, url: str, timeout_s: float, headers: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.headers = dict(headers) if headers else None
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self._connection: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> ClientConnection:
        async with self._lock:
            if self._connection is None:
                self._connection = await connect(
                    self.url,
                    open_timeout=self.timeout_s,
                    max_size=None,
                    compression=None,
                    user_agent_header=None,
                    additional_headers=self.headers,
                )
                self._reader = asyncio.create_task(self._read(self._connection))
            return self._connection

    async def call(self, ident: int, texts: Sequence[str]) -> Reply:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        frame = {"id": ident, "input": texts[0] if len(texts) == 1 else list(texts)}
        try:
            connection = await self._open()
            await connection.send(orjson.dumps(frame).decode())
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            return Reply(None, TIMEOUT)
        except (OSError, WebSocketException):
            return Reply(None, CONNECT_ERROR)
        finally:
            self.pending.pop(ident, None)

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for message in connection:
                frame = orjson.loads(message)
                future = self.pending.get(frame.get("id")) if isinstance(frame, dict) else None
                if future is not None and not future.done():
                    future.set_result(reply_of(frame))
        except WebSocketException:
            pass  # the socket closed: its callers are answered below, the next call reconnects
        finally:
            self._connection = None
            for future in self.pending.values():
                if not future.done():
                    future.set_result(Reply(None, CONNECT_ERROR))

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class WsSession:
    """`call` sends one frame on the socket with the fewest unanswered frames and awaits its answer."""

    def __init__(self, base_url: str, sockets: int, timeout_s: float, headers: Mapping[str, str] | None = None) -> None:
        self.sockets = [_Socket(ws_url(base_url), timeout_s, headers) for _ in range(max(1, sockets))]
        self._ids = itertools.count()

    async def call(self, texts: Sequence[str]) -> Reply:
        socket = min(self.sockets, key=lambda s: len(s.pending))
        return await socket.call(next(self._ids), texts)

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in self.sockets))


def ws(in_flight_per_socket: int) -> OpenSession:
    """Return an `open` for Endpoint: one socket per `in_flight_per_socket` clients (or connections)."""

    def open_session(
        base_url: str, connections: int, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> Session:
        return WsSession(base_url, math.ceil(connections / in_flight_per_socket), timeout_s, headers)

    return open_session
