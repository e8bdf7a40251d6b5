"""The production runner: warm models, an in-flight count and a graceful drain on SIGTERM, on daphne
(the default) or uvicorn (`serve --server uvicorn`: the same app, drain and log; a leaner HTTP stack)."""

from __future__ import annotations

import gc
import logging
import signal
import time
import weakref
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
    warm: bool = True
    access_log: bool = False
    server: str = "daphne"
    backlog: int = 2048
    event_loop: str = eventloop.DEFAULT  # uvicorn is given it; daphne's was chosen before Django loaded


SERVERS = ("daphne", "uvicorn")


# The drain ends once nothing is in flight and no request has arrived for this long: late requests on
# keep-alive connections get their 503 (and Connection: close) instead of a cut connection.
QUIET_BEFORE_EXIT_S = 0.3


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


def close_connections_after_each_response(server: object) -> None:
    """From now on every HTTP/1.1 answer carries `Connection: close` and its connection is closed.

    Keep-alive clients then learn of the drain from one 503 and reconnect elsewhere, instead of
    having their next request cut when the process exits. The process is stopping, so changing
    twisted's channel class for good is fine.
    """
    from twisted.web import http

    def never_persist(channel: object, request: object, version: bytes) -> bool:
        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])  # type: ignore[attr-defined]
        return False

    http.HTTPChannel.checkPersistence = never_persist  # type: ignore[method-assign]
    for protocol in list(_channels):
        channel = getattr(protocol, "_channel", protocol)  # twisted wraps HTTPChannel in a proxy
        if getattr(channel, "requests", None):
            channel.persistent = False  # closes once its current answer is out
        # An idle keep-alive connection is left open: a request may already be on its way on it.
        # Its next answer closes it; the drain ends once no request has arrived for a while.


_channels: weakref.WeakSet = weakref.WeakSet()


def track_channels() -> None:
    """Remember every HTTP connection daphne opens, so a drain can close the idle ones."""
    from daphne.http_protocol import HTTPFactory

    build = HTTPFactory.buildProtocol
    if getattr(build, "tracks_channels", False):
        return

    def build_and_track(factory: HTTPFactory, addr: object) -> object:
        protocol = build(factory, addr)
        if protocol is not None:
            _channels.add(protocol)
        return protocol

    build_and_track.tracks_channels = True  # type: ignore[attr-defined]
    HTTPFactory.buildProtocol = build_and_track  # type: ignore[method-assign]


def requests_on_channels() -> bool:
    """True while a daphne connection holds a request not yet answered, its body still arriving included.

    daphne calls the application only once the whole body is in, so the in-flight count misses an upload
    begun before the drain; exiting under it would cut the connection instead of answering it.
    """
    return any(getattr(getattr(protocol, "_channel", protocol), "requests", None) for protocol in list(_channels))


def skip_twisted_access_log() -> None:
    """Stop Twisted formatting an access-log line per request that nothing shows.

    daphne's factory keeps Twisted's default log file, so every answered request was formatted in
    Apache's combined format and published to Twisted's logging: 28 us a request, 3 % of the event loop's
    time at 100 connections. The access log of `serve --access-log` comes from daphne's action logger instead.
    """
    from daphne.http_protocol import HTTPFactory

    HTTPFactory.log = lambda factory, request: None  # type: ignore[method-assign]


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
        run_uvicorn(app, opts, out)
        return
    from daphne.server import Server
    from twisted.internet import reactor

    endpoints = daphne_endpoints(opts)

    def access(protocol: str, action: str, details: dict) -> None:
        # daphne calls action_logger(protocol, action, details) for "http" and "websocket" alike.
        if opts.access_log and protocol == "http" and action == "complete":
            took_ms = details.get("time_taken", 0) * 1000
            line = f"{details.get('client')} {details.get('method')} {details.get('path')} {details.get('status')}"
            out.write(f"{line} {took_ms:.1f}ms\n")

    class Runner(Server):
        def listen_success(self, port: object) -> None:
            super().listen_success(port)
            for host, bound in self.listening_addresses:
                out.write(f"listening on http://{host}:{bound}\n")
            if opts.unix_socket:
                out.write(f"listening on unix:{opts.unix_socket}\n")
            out.flush()

    track_channels()
    skip_twisted_access_log()
    server = Runner(
        app,
        endpoints=endpoints,
        signal_handlers=False,
        action_logger=access,
        application_close_timeout=opts.drain_timeout_s,
    )

    def drain_then_stop() -> None:
        if not begin_drain(out):
            return
        deadline = time.monotonic() + opts.drain_timeout_s

        def poll() -> None:
            if app.settled() and not requests_on_channels():
                finish()
            elif time.monotonic() >= deadline:
                warn_overdue(app, requests_on_channels())
                finish()
            else:
                reactor.callLater(0.02, poll)

        reactor.callLater(0.05, poll)
        try:
            close_connections_after_each_response(server)
        except Exception:  # the drain must go on even if twisted's internals differ
            logger.exception("could not close keep-alive connections; they will close at exit")
        # Stop listening so new connections are refused; open keep-alive ones get 503 + Connection: close.
        for listener in server.listeners:
            port = getattr(listener, "result", None)
            if port is not None and hasattr(port, "stopListening"):
                port.stopListening()

    def finish() -> None:
        from . import shutdown

        shutdown.run_hooks()
        out.write("stopped\n")
        out.flush()
        reactor.stop()

    def on_signal(signum: int, frame: object) -> None:
        reactor.callFromThread(drain_then_stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The loop daphne's app put the reactor on as Django loaded (daphne reads this attribute itself).
    loop = eventloop.kind(reactor._asyncioEventloop)  # type: ignore[attr-defined]
    out.write(f"daphne on {loop}\n")
    if loop != opts.event_loop:
        logger.warning(
            "EMBED_EVENT_LOOP=%s, but daphne runs on %s: it is chosen as manage.py starts (`manage.py serve`), "
            "before Django loads daphne",
            opts.event_loop,
            loop,
        )
    server.run()


def daphne_endpoints(opts: ServeOptions) -> list[str]:
    """Twisted endpoint strings for daphne, with the listen backlog of `opts` on TCP and UNIX sockets.

    Twisted listens with a backlog of 50. When a burst of new connections outruns the loop's accepts
    (1000 clients connecting while the loop serves batches), the kernel drops the SYNs beyond it and the
    clients retry after 1, 3, 7 s: that was daphne's p99 of 6-10 s at 1000 connections (4 s with 2048).
    uvicorn's default is 2048, and so is ours. An inherited socket (`--fd`) keeps the backlog it was bound
    with.
    """
    from daphne.endpoints import build_endpoint_description_strings

    endpoints = build_endpoint_description_strings(
        host=None if (opts.unix_socket or opts.fd is not None) else opts.host,
        port=None if (opts.unix_socket or opts.fd is not None) else opts.port,
        unix_socket=opts.unix_socket,
        file_descriptor=opts.fd,
    )
    return [f"{e}:backlog={opts.backlog}" if e.startswith(("tcp:", "unix:")) else e for e in endpoints]


def run_uvicorn(app: InFlight, opts: ServeOptions, out: IO[str]) -> None:
    """Serve `app` on uvicorn (httptools, the event loop of `opts`) with the same drain as on daphne."""
    import asyncio
    import contextlib

    import uvicorn

    from . import shutdown

    listen = {"fd": opts.fd} if opts.fd is not None else {"uds": opts.unix_socket} if opts.unix_socket else {}
    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        **listen,
        backlog=opts.backlog,
        loop=opts.event_loop,
        http=_tolerant_httptools_protocol(),
        ws="websockets-sansio",
        lifespan="off",  # the models are warm already; channels' router has no lifespan handler
        access_log=opts.access_log,
        log_level="info" if opts.access_log else "warning",
        timeout_graceful_shutdown=opts.drain_timeout_s,
        server_header=False,
    )

    class Runner(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets)
            out.write(f"uvicorn on {eventloop.kind(asyncio.get_running_loop())}\n")
            for server in getattr(self, "servers", []):
                for sock in server.sockets:
                    address = sock.getsockname()
                    if isinstance(address, tuple):
                        out.write(f"listening on http://{address[0]}:{address[1]}\n")
                    else:
                        out.write(f"listening on unix:{address}\n")
            out.flush()

        @contextlib.contextmanager
        def capture_signals(self):  # noqa: ANN202 - uvicorn's own hook
            # uvicorn's handlers stop at once and re-raise the signal at exit (status -15); ours drain
            # as on daphne - refuse new work, finish what was admitted - and exit 0.
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.drain)
            try:
                yield
            finally:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)

        def drain(self) -> None:
            if begin_drain(out):
                asyncio.get_running_loop().create_task(self.wait_then_exit())

        async def wait_then_exit(self) -> None:
            deadline = time.monotonic() + opts.drain_timeout_s
            # Connections made in the first moments of the drain still get their 503 + Connection: close
            # (a client whose keep-alive connection was just closed reconnects at once); then the port
            # refuses new connections while open ones finish.
            await asyncio.sleep(QUIET_BEFORE_EXIT_S)
            for server in getattr(self, "servers", []):
                server.close()
            while not app.settled():
                if time.monotonic() >= deadline:
                    warn_overdue(app)
                    break
                await asyncio.sleep(0.02)
            self.should_exit = True

    Runner(config).run()
    shutdown.run_hooks()
    out.write("stopped\n")
    out.flush()


def _tolerant_httptools_protocol() -> object:
    """uvicorn's httptools protocol, made to ignore an `Upgrade: h2c` offer.

    Java's HttpClient (HTTP_2 by default) offers h2c on every plain-HTTP request, body included.
    llhttp takes everything after such a request's headers for the new protocol, so uvicorn handed the
    app an empty body (400 "input: This field is required."). The offer is optional (RFC 9113 dropped
    it); renaming that one header before parsing answers in HTTP/1.1, as daphne does. WebSocket upgrades
    are untouched. Over a network the header block can arrive in pieces, cut inside that line: while a
    request's headers are incomplete, the unfinished last line of a read waits for the next read (no
    request can start before its headers end, so nothing waits that could be answered). Not caught: an
    offer cut in a read that also ends the body of a pipelined request before it (clients do not
    pipeline). Falls back to uvicorn's own choice where httptools is missing.
    """
    import re

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    h2c_offer = re.compile(rb"(\r\n)upgrade([ \t]*:[ \t]*h2c[ \t]*\r\n)", re.IGNORECASE)
    longest_held = 8192  # an unfinished header line longer than this goes to the parser as it is

    class TolerantHttpToolsProtocol(HttpToolsProtocol):
        _in_headers = True  # a connection starts with a request's headers
        _held = b""

        def data_received(self, data: bytes) -> None:
            if self._held:
                data, self._held = self._held + data, b""
            if self._in_headers and b"\r\n\r\n" not in data:
                cut = data.rfind(b"\r\n")
                if cut >= 0 and len(data) - cut <= longest_held:
                    data, self._held = data[:cut], data[cut:]
            if b"2c" in data or b"2C" in data:
                data = h2c_offer.sub(rb"\1x-h2c-ignored\2", data)
            if data:
                super().data_received(data)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_headers = True  # the next bytes on this connection start the next request
            super().on_message_complete()

    return TolerantHttpToolsProtocol
