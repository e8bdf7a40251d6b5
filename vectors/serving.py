"""The production runner: warm models, an in-flight count and a graceful drain on SIGTERM, on daphne
(the default, vectors.daphne_server) or uvicorn (`serve --server uvicorn`, vectors.uvicorn_server: the
same app, drain and log; a leaner HTTP stack)."""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from . import conf, eventloop, lifecycle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    unix_socket: str | None = None
    fd: int | None = None
    drain_timeout_s: float = 20.0
    read_timeout_s: float = 60.0  # for a request's line, headers and body once reading it began; 0: no limit
    warm: bool = True
    access_log: bool = False
    server: str = "daphne"
    backlog: int = 2048
    event_loop: str = eventloop.DEFAULT  # uvicorn is given it; daphne's was chosen before Django loaded


SERVERS = ("daphne", "uvicorn")


class CannotListen(Exception):
    """The server's address cannot be bound (in use, not this machine's, a privileged port)."""


# The drain ends once nothing is in flight and no request has arrived for this long: late requests on
# keep-alive connections get their 503 (and Connection: close) instead of a cut connection.
QUIET_BEFORE_EXIT_S = 0.3

# How long a connection answered before its request's body was all in (a 413 for a body over the limit)
# goes on reading, and dropping, what the client still sends before it is closed: closing with data
# unread makes the kernel reset the connection, and the client may lose the answer. Both servers.
LINGER_S = 2.0


def websocket_max_bytes() -> int:
    """The largest WebSocket message either server reads: the body limit and 64 KiB more.

    The consumer answers a frame a little over the body limit with a 413 error frame and keeps the socket;
    past this the server itself closes it (1009), before it has buffered more than an HTTP body may be.
    daphne's own limit was 1 MiB: it dropped the connection, with no close frame, on a frame uvicorn
    (16 MiB) answered.
    """
    return conf.limits().max_body_bytes + 64 * 1024


# Request line plus headers that daphne reads, as uvicorn does (httptools refuses a request line past
# 64 KiB): Twisted's own 16 KiB closed the connection unanswered on a GET /get_vector of a 4 000-word text,
# which uvicorn embedded. Longer texts go in a POST.
REQUEST_HEAD_MAX_BYTES = 64 * 1024


class InFlight:
    """ASGI wrapper counting HTTP requests being answered.

    `admitted` counts only requests that arrived before draining began: the drain waits for those
    to finish. Requests arriving during the drain are answered 503 quickly and counted in `active`.
    """

    def __init__(self, app: object, close_when_draining: bool = False) -> None:
        self.app = app
        self.close_when_draining = close_when_draining
        self.admitted = 0
        self.active = 0
        self.last_arrival = 0.0

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        counted = not lifecycle.is_draining()
        self.last_arrival = time.monotonic()
        self.admitted += counted
        self.active += 1
        if self.close_when_draining:
            send = self._closing(send)
        try:
            await self.app(scope, receive, send)  # type: ignore[operator]
        finally:
            self.active -= 1
            self.admitted -= counted

    def settled(self) -> bool:
        """True once nothing is in flight and no request has arrived for the quiet period."""
        quiet = time.monotonic() - self.last_arrival >= QUIET_BEFORE_EXIT_S
        return self.admitted == 0 and self.active == 0 and lifecycle.frames_in_flight() == 0 and quiet

    @staticmethod
    def _closing(send: object) -> object:
        """Add `Connection: close` to an answer that starts while draining (uvicorn then closes it)."""

        async def closing_send(message: dict) -> None:
            if message["type"] == "http.response.start" and lifecycle.is_draining():
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)  # type: ignore[operator]

        return closing_send


def begin_drain(out: IO[str]) -> bool:
    """Start draining (once): new work gets 503, /ready turns 503. False if already draining."""
    if lifecycle.is_draining():
        return False
    lifecycle.start_draining()
    out.write("draining: refusing new work, finishing in-flight requests\n")
    out.flush()
    return True


def warn_overdue(app: InFlight, uploading: bool = False) -> None:
    logger.warning(
        "drain deadline passed with %d admitted requests in flight%s",
        app.admitted,
        " and a request still arriving" if uploading else "",
    )


# Once the server has stopped, how long a model call still running may take before the process leaves
# without it: a batch ends within a second or two on a CPU; a call that never returns would hold the exit.
MODEL_CALL_GRACE_S = 5.0
HUNG_MODEL_CALL_EXIT = 70  # EX_SOFTWARE: the drain ended, but not cleanly


def leave_hung_model_calls(
    out: IO[str], grace_s: float = MODEL_CALL_GRACE_S, leave: Callable[[int], object] = os._exit
) -> None:
    """Exit now, status HUNG_MODEL_CALL_EXIT, if a model call outlives the stopped server by `grace_s`.

    The encode lanes are ThreadPoolExecutor workers, which the interpreter joins at exit with no timeout:
    a call that never returns (what EMBED_INFERENCE_TIMEOUT_MS answers its requests for) would keep a
    stopped server from ever exiting. Idle lanes are told to end; the log was flushed before this.
    """
    engines = conf.get_registry().engines()
    for engine in engines:
        for executor in engine.executors:
            executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace_s
    lanes = [thread for engine in engines for thread in engine.lane_threads()]
    for lane in lanes:
        lane.join(max(0.0, deadline - time.monotonic()))
    hung = [lane.name for lane in lanes if lane.is_alive()]
    if hung:
        logger.error(
            "a model call has not returned %.0f s after the server stopped (%s); exiting without it",
            grace_s,
            ", ".join(hung),
        )
        out.write("stopped with a model call still running\n")
        out.flush()
        logging.shutdown()
        leave(HUNG_MODEL_CALL_EXIT)


def run_server(opts: ServeOptions, out: IO[str]) -> None:
    """Warm the models, listen, serve until SIGTERM/SIGINT, then drain and exit."""
    from channels.routing import get_default_application

    if opts.warm:
        started = time.perf_counter()
        conf.get_registry().load_all()
        out.write(f"models warm in {time.perf_counter() - started:.1f} s: {', '.join(conf.get_registry().names)}\n")
        out.flush()

    app = InFlight(get_default_application(), close_when_draining=opts.server == "uvicorn")
    # Everything alive now (Django, torch, the models) lives as long as the process: move it out of
    # the collector's reach. Without this each full collection walked those millions of objects while
    # holding the GIL - ~250 ms pauses, three every 10 s at 100 connections, stalling the encode
    # threads too (they take the GIL between ops); with it throughput rose ~6 % and p99 fell.
    gc.collect()
    gc.freeze()
    if opts.server == "uvicorn":
        from .uvicorn_server import run_uvicorn

        run_uvicorn(app, opts, out)
    else:
        from .daphne_server import run_daphne

        run_daphne(app, opts, out)
    leave_hung_model_calls(out)
