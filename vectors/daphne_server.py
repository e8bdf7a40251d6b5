"""daphne for `manage.py serve`: its endpoints, the drain on SIGTERM, and what Twisted does per request (the
early 413 also however else daphne runs this app)."""

from __future__ import annotations

import logging
import signal
import sys
import time
import weakref
from typing import IO, Any

from . import conf, eventloop
from .api.errors import ApiError, PayloadTooLarge
from .serving import (
    LINGER_S,
    REQUEST_HEAD_MAX_BYTES,
    CannotListen,
    InFlight,
    ServeOptions,
    begin_drain,
    warn_overdue,
    websocket_max_bytes,
)

logger = logging.getLogger(__name__)


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


def limit_request_bodies(limit_bytes: int) -> None:
    """Answer 413 as soon as a body is known to pass `limit_bytes`, before Twisted has buffered it all.

    daphne calls the application only once the whole body is in, buffered by Twisted in memory or a
    temporary file, so the API's own check came after an upload of any size: a 100 MB Content-Length got
    its 413 only once 100 MB had arrived, and a chunked body without end filled the disk. Now a declared
    length over the limit is refused when the headers are in, and a chunked body when it passes it: the
    413 JSON error, then the connection closes after the client's unread data is drained for LINGER_S.
    """
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "body_limit_bytes", None) is not None:
        WebRequest.body_limit_bytes = limit_bytes  # type: ignore[attr-defined]
        return
    got_length = WebRequest.gotLength
    handle_chunk = WebRequest.handleContentChunk
    process = WebRequest.process

    def gotLength(request: WebRequest, length: int | None) -> None:  # noqa: N802 - Twisted's name
        request.head_read_at = time.monotonic()  # when its head was whole: what a refusal's row times from
        request.body_bytes = 0
        request.refused = False
        if length is not None and length > WebRequest.body_limit_bytes:
            got_length(request, 0)  # an empty in-memory body: what still arrives is dropped, not stored
            request.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the refusal
            refuse(request, PayloadTooLarge.declared(length, WebRequest.body_limit_bytes))
            return
        got_length(request, length)

    def handleContentChunk(request: WebRequest, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if request.refused:
            return
        request.body_bytes += len(data)
        if request.body_bytes > WebRequest.body_limit_bytes:
            refuse(request, PayloadTooLarge.over(WebRequest.body_limit_bytes))
            return
        handle_chunk(request, data)

    def process_unless_refused(request: WebRequest) -> None:
        if not getattr(request, "refused", False):
            process(request)

    WebRequest.body_limit_bytes = limit_bytes  # type: ignore[attr-defined]
    WebRequest.gotLength = gotLength  # type: ignore[method-assign]
    WebRequest.handleContentChunk = handleContentChunk  # type: ignore[method-assign]
    WebRequest.process = process_unless_refused  # type: ignore[method-assign]


def limit_bodies_when_daphne_runs() -> None:
    """Give every daphne Server this process runs the early 413, however daphne was started.

    `manage.py serve` sets its server up itself; daphne's `runserver` and a bare `daphne
    embedservice.asgi:application` get the refusal from here (embedservice.asgi calls it), with the exit fix
    that goes with it: a refused request never gets an application instance, and daphne's exit stopped at
    its entry with a KeyError before cancelling the rest. Nothing is imported here: only a process that has
    imported daphne's server already (daphne's app and command line do; that import installs Twisted's
    reactor) has that class wrapped, and Twisted's request is patched only as a Server starts running, so in
    a process that runs none (uvicorn's, a management command, a test) no request of daphne's changes.
    """
    module = sys.modules.get("daphne.server")
    if module is None or getattr(module.Server.run, "limits_request_bodies", False):
        return
    server_class = module.Server
    run = server_class.run
    kill_all_applications = server_class.kill_all_applications

    def run_with_body_limit(server: object) -> object:
        limit_request_bodies(conf.limits().max_body_bytes)
        return run(server)

    def kill_applications_of_answered_requests(server: object) -> object:
        forget_requests_without_application(server.connections)  # type: ignore[attr-defined]
        return kill_all_applications(server)

    run_with_body_limit.limits_request_bodies = True  # type: ignore[attr-defined]
    server_class.run = run_with_body_limit
    server_class.kill_all_applications = kill_applications_of_answered_requests


def refuse(request: object, error: PayloadTooLarge) -> None:
    """Write the 413 JSON answer on the connection, stop answering on it, and close it after LINGER_S."""
    from twisted.internet import reactor

    from .api.accounting import raw_request_id
    from .api.errors import raw_http_answer

    request.refused = True  # type: ignore[attr-defined]
    channel = request.channel  # type: ignore[attr-defined]
    stop_read_deadline(channel)  # answered: the linger below closes it
    channel._answered = True  # type: ignore[attr-defined] # what it still sends starts no read deadline
    request_id = raw_request_id(request.getHeader(b"x-request-id"))  # type: ignore[attr-defined]
    transport = channel.transport
    transport.write(raw_http_answer(error, request_id))
    # The answer is whole: no more requests on this connection, and what the client still sends is dropped.
    channel.persistent = False
    # Twisted would go on parsing it (chunk framing, a form body) and could answer a malformed rest
    # with a 400 of its own after ours; the bytes are only drained now.
    channel.rawDataReceived = lambda data: None
    if hasattr(transport, "loseWriteConnection"):
        transport.loseWriteConnection()
    reactor.callLater(LINGER_S, transport.loseConnection)
    log_server_answer(channel, error, request_id, ms_since_head(request))


def ms_since_head(request: object | None) -> float:
    """Milliseconds since Twisted had the head of `request` whole (0 before, or without a request)."""
    head_read_at = getattr(request, "head_read_at", None)
    return 0.0 if head_read_at is None else (time.monotonic() - head_read_at) * 1000


def forget_requests_without_application(connections: dict) -> None:
    """Drop daphne's entries for requests that never reached the application (refused for their size,
    or an upload cut short): daphne's exit looks up their application instance and would stop, with a
    KeyError, before cancelling the ones left after a drain timeout. Its checker drops them within 1 s."""
    for protocol in [p for p, details in connections.items() if "application_instance" not in details]:
        del connections[protocol]


def log_server_answer(channel: object, error: ApiError, request_id: str, total_ms: float) -> None:
    """Log Twisted's side's own answer to the request being read (a 400, a 408) as an embedding route's row,
    as for a 413; the application never saw the request (daphne starts it when the body is all in)."""
    from .api.fastpath import log_refusal

    method, path = request_line_of(channel)
    caller = getattr(channel.transport.getPeer(), "host", "") or ""  # type: ignore[attr-defined]
    log_refusal(method, path, error, request_id, caller, total_ms)


def request_line_of(channel: object) -> tuple[str, str]:
    """The method and path of the request Twisted is reading; ("", "") until its request line is whole.

    Twisted keeps them on the channel from the request line until the body is all in, then on the request
    (a multipart body it cannot split is refused after that)."""
    command = getattr(channel, "_command", None)
    if command is not None:
        return bytes(command).decode("latin-1"), path_of(channel)
    request = current_request(channel)
    method, path = getattr(request, "method", None), getattr(request, "path", None)
    if isinstance(method, bytes) and isinstance(path, bytes):  # set once Twisted has the whole request
        return method.decode("latin-1"), path.decode("latin-1")
    return "", ""


def current_request(channel: object) -> object | None:
    """The request Twisted is reading on `channel` (its last), or None before the first."""
    requests = getattr(channel, "requests", None)
    return requests[-1] if requests else None


def answer_and_close(channel: object, error: ApiError, total_ms: float) -> None:
    """Write Twisted's side's own answer `error` to the request being read, close the connection, log it."""
    from .api.errors import raw_http_answer

    request_id = request_id_for(channel)
    channel.transport.write(raw_http_answer(error, request_id))  # type: ignore[attr-defined]
    channel.loseConnection()  # type: ignore[attr-defined]
    log_server_answer(channel, error, request_id, total_ms)


def request_id_for(channel: object) -> str:
    """The x-request-id of the server's own answer to the request being read: the client's where it sent one."""
    from .api.accounting import raw_request_id

    request = current_request(channel) if request_line_of(channel) != ("", "") else None
    headers = getattr(request, "requestHeaders", None)
    sent = headers.getRawHeaders(b"x-request-id") if headers is not None else None
    return raw_request_id(sent[0] if sent else None)


def path_of(channel: object) -> str:
    raw = bytes(getattr(channel, "_path", b"") or b"")
    return raw.split(b"?", 1)[0].decode("latin-1")


def read_long_request_heads(limit_bytes: int) -> None:
    """Let Twisted read a request line, and a request's line plus headers, of up to `limit_bytes`."""
    from twisted.web import http

    http.HTTPChannel.MAX_LENGTH = limit_bytes  # one line (Twisted: 16 KiB)
    http.HTTPChannel.totalHeadersSize = limit_bytes  # the request line and all the headers (16 KiB)


def answer_malformed_requests_in_json() -> None:
    """Answer what Twisted's parser refuses with the API's JSON 400, where Twisted wrote an empty one."""
    from twisted.web import http

    from .api.errors import MalformedHttp

    error = MalformedHttp(
        "the request is not valid HTTP/1.1: its request line, a header, the headers' size "
        f"(at most {REQUEST_HEAD_MAX_BYTES} bytes), the body's chunked framing or its multipart form cannot be read"
    )

    def respond_and_disconnect(channel: object) -> None:
        stop_read_deadline(channel)
        answer_and_close(channel, error, ms_since_head(current_request(channel)))

    http.HTTPChannel._respondToBadRequestAndDisconnect = respond_and_disconnect  # type: ignore[method-assign]


def read_requests_within(seconds: float) -> None:
    """Give each request `seconds` from when Twisted begins reading it to its body's last byte, then 408 and close.

    Twisted's own timeout is on idleness: a client sending a byte a minute held its connection for ever.
    The clock runs while a request is being read: not while it is answered, nor between requests, nor while
    Twisted holds a pipelined request behind an answer (it starts when Twisted reads it). A request that
    arrives whole in one read never starts it.
    """
    from twisted.internet import reactor
    from twisted.web import http

    from .api.errors import RequestTimeout

    channel_class = http.HTTPChannel
    if getattr(channel_class.dataReceived, "read_deadline", False):
        channel_class.read_timeout_s = seconds  # type: ignore[attr-defined]
        return
    data_received = channel_class.dataReceived
    all_content_received = channel_class.allContentReceived
    connection_lost = channel_class.connectionLost

    def timed_out(channel: object, started: float) -> None:
        channel.__dict__.pop("_read_deadline", None)  # type: ignore[attr-defined]
        if getattr(channel.transport, "disconnecting", False) or channel.__dict__.get("_answered"):  # type: ignore[attr-defined]
            return  # answered and closing already (a 400; a 413, whose linger closes it)
        error = RequestTimeout.after(channel_class.read_timeout_s)
        answer_and_close(channel, error, (time.monotonic() - started) * 1000)

    def dataReceived(channel: object, data: bytes) -> None:  # noqa: N802 - Twisted's name
        data_received(channel, data)
        # Still reading a request after this read (a whole one has set _handlingRequest): start its clock.
        timeout = channel_class.read_timeout_s
        if (
            data
            and timeout > 0
            and not channel._handlingRequest  # type: ignore[attr-defined]
            and "_read_deadline" not in channel.__dict__
            and not channel.__dict__.get("_answered")  # a 413 went out: what follows is only drained
            and not getattr(channel.transport, "disconnecting", False)  # type: ignore[attr-defined]
        ):
            channel._read_deadline = reactor.callLater(timeout, timed_out, channel, time.monotonic())  # type: ignore[attr-defined]

    def allContentReceived(channel: object) -> None:  # noqa: N802 - Twisted's name
        stop_read_deadline(channel)
        all_content_received(channel)

    def connectionLost(channel: object, reason: object) -> None:  # noqa: N802 - Twisted's name
        stop_read_deadline(channel)
        connection_lost(channel, reason)

    dataReceived.read_deadline = True  # type: ignore[attr-defined]
    channel_class.read_timeout_s = seconds  # type: ignore[attr-defined]
    channel_class.dataReceived = dataReceived  # type: ignore[method-assign]
    channel_class.allContentReceived = allContentReceived  # type: ignore[method-assign]
    channel_class.connectionLost = connectionLost  # type: ignore[method-assign]


def stop_read_deadline(channel: object) -> None:
    """Stop the clock `read_requests_within` started for the request being read on `channel`, if any."""
    deadline = channel.__dict__.pop("_read_deadline", None)  # type: ignore[attr-defined]
    if deadline is not None and deadline.active():
        deadline.cancel()


def skip_twisted_access_log() -> None:
    """Stop Twisted formatting an access-log line per request that nothing shows.

    daphne's factory keeps Twisted's default log file, so every answered request was formatted in
    Apache's combined format and published to Twisted's logging: 28 us a request, 3 % of the event loop's
    time at 100 connections. The access log of `serve --access-log` comes from daphne's action logger instead.
    """
    from daphne.http_protocol import HTTPFactory

    HTTPFactory.log = lambda factory, request: None  # type: ignore[method-assign]


def run_daphne(app: InFlight, opts: ServeOptions, out: IO[str]) -> None:
    """Serve `app` on daphne until SIGTERM/SIGINT, then drain and exit."""
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
        listen_failure: str | None = None

        def listen_error(self, failure: Any) -> None:  # noqa: ANN401 - Twisted's Failure
            self.listen_failure = failure.getErrorMessage()
            super().listen_error(failure)  # logs it and stops the reactor

        def listen_success(self, port: object) -> None:
            super().listen_success(port)
            for host, bound in self.listening_addresses:
                out.write(f"listening on http://{host}:{bound}\n")
            if opts.unix_socket:
                out.write(f"listening on unix:{opts.unix_socket}\n")
            out.flush()

    track_channels()
    read_long_request_heads(REQUEST_HEAD_MAX_BYTES)
    read_requests_within(opts.read_timeout_s)
    answer_malformed_requests_in_json()
    skip_twisted_access_log()
    limit_bodies_when_daphne_runs()  # done already where embedservice.asgi is the application; once is enough
    server = Runner(
        app,
        endpoints=endpoints,
        signal_handlers=False,
        action_logger=access,
        application_close_timeout=opts.drain_timeout_s,
        websocket_max_message_size=websocket_max_bytes(),
        websocket_max_frame_size=websocket_max_bytes(),
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
    if server.listen_failure is not None:
        raise CannotListen(server.listen_failure)


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
