"""uvicorn for `manage.py serve --server uvicorn`: the same app and drain as on daphne, on httptools."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import IO

from . import eventloop
from .serving import (
    LINGER_S,
    QUIET_BEFORE_EXIT_S,
    CannotListen,
    InFlight,
    ServeOptions,
    begin_drain,
    warn_overdue,
    websocket_max_bytes,
)

logger = logging.getLogger(__name__)


def run_uvicorn(app: InFlight, opts: ServeOptions, out: IO[str]) -> None:
    """Serve `app` on uvicorn (httptools, the event loop of `opts`) with the same drain as on daphne."""
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
        http=_tolerant_httptools_protocol(opts.read_timeout_s),
        ws="websockets-sansio",
        ws_max_size=websocket_max_bytes(),
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
            while not app.settled() or requests_arriving(self.server_state.connections):
                if time.monotonic() >= deadline:
                    warn_overdue(app, requests_arriving(self.server_state.connections))
                    break
                await asyncio.sleep(0.02)
            self.should_exit = True

    runner = Runner(config)
    try:
        runner.run()
    except SystemExit:
        if runner.started:
            raise
        # uvicorn logged the bind's OSError and exits 3 before it served anything: the same error as daphne's.
        where = f"fd {opts.fd}" if opts.fd is not None else opts.unix_socket or f"{opts.host}:{opts.port}"
        raise CannotListen(f"uvicorn could not listen on {where} (its error is logged above)") from None
    shutdown.run_hooks()
    out.write("stopped\n")
    out.flush()


def requests_arriving(connections: set) -> bool:
    """True while a connection holds the start of a request whose headers are not all in yet.

    uvicorn calls the application (and counts the request as a task of its own) once the headers are in;
    a request begun before the drain but still sending them would be cut by the exit instead of answered.
    """
    return any(getattr(connection, "_begun", False) for connection in list(connections))


class LingeringClose:
    """A request's view of its connection: closing it before the request's body is all in half-closes
    it (the answer is whole), drops what still arrives, and closes it LINGER_S later."""

    def __init__(self, protocol: object, cycle: object) -> None:
        self._protocol = protocol
        self._cycle = cycle  # its own request's, not the protocol's latest (a pipelined one may follow)
        self._transport = protocol.transport  # type: ignore[attr-defined]

    def close(self) -> None:
        cycle = self._cycle
        if cycle.more_body and not self._transport.is_closing() and self._transport.can_write_eof():  # type: ignore[attr-defined]
            self._protocol._lingering = True  # type: ignore[attr-defined]
            self._transport.write_eof()
            self._protocol.loop.call_later(LINGER_S, self._transport.close)  # type: ignore[attr-defined]
        else:
            self._transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


def _tolerant_httptools_protocol(read_timeout_s: float = 0) -> object:
    """uvicorn's httptools protocol, made to ignore an `Upgrade: h2c` offer, to read a request within
    `read_timeout_s` of beginning to read it (0: no limit) and to refuse malformed HTTP in the API's JSON.

    Java's HttpClient (HTTP_2 by default) offers h2c on every plain-HTTP request, body included.
    llhttp takes everything after such a request's headers for the new protocol, so uvicorn handed the
    app an empty body (400 "input: This field is required."). The offer is optional (RFC 9113 dropped
    it); renaming that one header before parsing answers in HTTP/1.1, as daphne does. WebSocket upgrades
    are untouched. Over a network the header block can arrive in pieces, cut inside that line: while a
    request's headers are incomplete, the unfinished last line of a read waits for the next read (no
    request can start before its headers end, so nothing waits that could be answered). Not caught: an
    offer cut in a read that also ends the body of a pipelined request before it (clients do not
    pipeline). Falls back to uvicorn's own choice where httptools is missing.

    uvicorn has no limit on how long a request's head and body may take (only on the idle time between
    requests): a client sending a header line a minute held its connection, and a drain, for ever. Here a
    request not all in `read_timeout_s` after a read left it unfinished gets a 408 and its connection is
    closed (a request queued behind an answer starts its clock when its turn comes).
    uvicorn answered HTTP that httptools refuses with a text/plain 400 and closed the connection at once,
    cutting the answer to a valid request sent before the malformed one on the same connection; now the
    400 is the API's JSON error, naming what the parser found, and comes after the answers before it.
    """
    import re
    import sys

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    import urllib.parse

    import httptools

    from .api.accounting import new_request_id, raw_request_id
    from .api.errors import ApiError, MalformedHttp, RequestTimeout, raw_http_answer
    from .api.fastpath import ANSWERED_BY_SERVER, log_refusal

    h2c_offer = re.compile(rb"(\r\n)upgrade([ \t]*:[ \t]*h2c[ \t]*\r\n)", re.IGNORECASE)
    longest_held = 8192  # an unfinished header line longer than this goes to the parser as it is

    class TolerantHttpToolsProtocol(HttpToolsProtocol):
        _in_headers = True  # a connection starts with a request's headers
        _begun = False  # bytes of a request whose headers are not all in yet (requests_arriving)
        _mid_message = False  # the parser is inside a request (its head or its body)
        _held = b""
        _lingering = False
        _read_deadline: asyncio.TimerHandle | None = None
        _began_at = 0.0  # the loop's time when the parser began the request being read
        _refusal: bytes | None = None  # written, and the connection closed, once the answers owed before it are out

        def data_received(self, data: bytes) -> None:
            if self._lingering or self._refusal is not None:
                return  # answered and closing, or past a malformed request: the rest is dropped unparsed
            if self._in_headers and data:
                self._begun = True
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
            self._start_read_deadline()  # only for a request this read left unfinished: none on the usual path

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._mid_message = self._begun = True
            self._began_at = self.loop.time()

        def on_headers_complete(self) -> None:
            self._in_headers = self._begun = False  # from here uvicorn's shutdown waits for the request
            super().on_headers_complete()
            if self.parser.should_upgrade() and self._should_upgrade():
                self._mid_message = False  # the WebSocket protocol takes the connection over
                self._stop_read_deadline()
            elif self.pipeline and self.pipeline[0][0] is self.cycle:
                self._stop_read_deadline()  # queued behind an answer, reading paused: its clock starts with its turn
            if self.cycle is not None and self.cycle.transport is self.transport:
                self.cycle.transport = LingeringClose(self, self.cycle)

        def on_message_complete(self) -> None:
            self._in_headers = True  # the next bytes on this connection start the next request
            self._mid_message = False
            self._stop_read_deadline()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_read_deadline()
            super().connection_lost(exc)

        def _start_read_deadline(self) -> None:
            """Start the clock of the request being read, if one is unfinished, not queued, and has none yet."""
            reading = (self._mid_message or self._held) and self._read_deadline is None and not self.pipeline
            if (
                reading
                and read_timeout_s > 0
                and not self.transport.is_closing()
                and self.transport.get_protocol() is self
            ):
                self._read_deadline = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _stop_read_deadline(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _answer_owed(self) -> bool:
            """True while a request before the one being read is still queued or being answered."""
            if self.pipeline:
                return True
            return self.cycle is not None and not self._own_cycle() and not self.cycle.response_complete

        def _own_cycle(self) -> bool:
            """Whether `self.cycle` is the request being read's: not while its headers are still coming, nor
            when uvicorn failed on them before making its cycle (a target it cannot parse)."""
            return not self._in_headers and self.cycle is not None and self.cycle.scope is self.scope

        def _read_timed_out(self) -> None:
            self._read_deadline = None
            if self.transport.is_closing() or self._lingering:
                return  # closing already (after a 413 the linger closes it)
            self._begun = False  # nothing of it is answered: the drain need not wait for it
            if self._answer_owed():
                self._refusal = b""  # the answers before it go out, then the connection closes
                return
            # The application, if it is waiting for the body, is told the client has gone.
            self._answer_and_close(RequestTimeout.after(read_timeout_s))

        def _log_answer(self, error: ApiError, request_id: str) -> None:
            """Log the server's own answer to the request being read as an embedding route's row (as for a
            413), and mark it for its application, which sees the client gone: the row is this one, not a 499."""
            try:
                method, path = self._request_line()
                if not self._in_headers:
                    self.scope[ANSWERED_BY_SERVER] = True
                caller = self.client[0] if self.client else ""
                log_refusal(method, path, error, request_id, caller, (self.loop.time() - self._began_at) * 1000)
            except Exception:  # a log row is not worth the connection's handling
                logger.exception("could not log the answer %d to a request", error.status_code)

        def _request_id(self) -> str:
            """The x-request-id of the server's own answer: the client's, where its headers are known to be its."""
            try:
                if self._request_line() != ("", ""):
                    sent = next((value for name, value in self.headers if name == b"x-request-id"), None)
                    return raw_request_id(sent)
            except Exception:  # the answer goes out whatever this finds
                logger.exception("could not read the request's x-request-id")
            return new_request_id()

        def _request_line(self) -> tuple[str, str]:
            """The method and path of the request being read; ("", "") until they are known to be whole."""
            if not self._in_headers:  # uvicorn has read them into this request's scope (unless it failed to)
                return self.scope.get("method", ""), self.scope.get("path", "")
            if not (self._mid_message and (self.headers or self._held.startswith(b"\r\n"))):
                # Only a line end after it shows the parser has this request's whole target: a header line it
                # read, or the line end that `data_received` holds back before an unfinished header line.
                return "", ""
            try:
                target = httptools.parse_url(self.url).path or b""  # none in an absolute URL without a path
            except httptools.HttpParserInvalidURLError:
                return "", ""
            return self.parser.get_method().decode("latin-1"), urllib.parse.unquote(target.decode("latin-1"))

        def send_400_response(self, msg: str) -> None:
            # uvicorn calls this inside its `except httptools.HttpParserError`: the error says what is wrong.
            found = sys.exc_info()[1]
            error = MalformedHttp(f"the request is not valid HTTP/1.1: {found}" if str(found or "") else None)
            self._stop_read_deadline()
            self._begun = False
            queued = self._own_cycle() and bool(self.pipeline) and self.pipeline[0][0] is self.cycle
            if queued:
                self.pipeline.popleft()  # its body is malformed and it waited behind another: it is not run
            if queued or self._answer_owed():
                request_id = self._request_id()
                self._refusal = raw_http_answer(error, request_id)  # after the answers owed before it
                self._log_answer(error, request_id)
                return
            self._answer_and_close(error)

        def _answer_and_close(self, error: ApiError) -> None:
            """Answer `error` to the request being read, unless its own answer has begun (nothing can follow
            that), and close the connection."""
            if self._own_cycle() and self.cycle.response_started:
                self.transport.close()  # its own answer has begun: nothing can follow it
                return
            request_id = self._request_id()
            self.transport.write(raw_http_answer(error, request_id))
            self.transport.close()
            self._log_answer(error, request_id)  # after the close: a failure here cannot leave it open

        def on_response_complete(self) -> None:
            queued = bool(self.pipeline)  # uvicorn starts the next queued request, if there is one
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if self._refusal is not None:
                if not queued:  # that was the last answer owed before it
                    self.transport.write(self._refusal)
                    self.transport.close()
            elif queued:
                self._start_read_deadline()  # the request it just started may still be arriving

    return TolerantHttpToolsProtocol
