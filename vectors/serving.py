"""The production runner: daphne with warm models, an in-flight count and a graceful drain on SIGTERM."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from typing import IO

from . import conf, lifecycle

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


class InFlight:
    """ASGI wrapper that counts HTTP requests being answered (the drain waits for zero)."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        self.count += 1
        try:
            await self.app(scope, receive, send)  # type: ignore[operator]
        finally:
            self.count -= 1


def run_server(opts: ServeOptions, out: IO[str]) -> None:
    """Warm the models, listen, serve until SIGTERM/SIGINT, then drain and exit."""
    from channels.routing import get_default_application
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from twisted.internet import reactor

    if opts.warm:
        started = time.perf_counter()
        conf.get_registry().load_all()
        out.write(f"models warm in {time.perf_counter() - started:.1f} s: {', '.join(conf.get_registry().names)}\n")
        out.flush()

    app = InFlight(get_default_application())
    endpoints = build_endpoint_description_strings(
        host=None if (opts.unix_socket or opts.fd is not None) else opts.host,
        port=None if (opts.unix_socket or opts.fd is not None) else opts.port,
        unix_socket=opts.unix_socket,
        file_descriptor=opts.fd,
    )

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

    server = Runner(
        app,
        endpoints=endpoints,
        signal_handlers=False,
        action_logger=access,
        application_close_timeout=opts.drain_timeout_s,
    )

    def drain_then_stop() -> None:
        if lifecycle.is_draining():
            return
        lifecycle.start_draining()
        out.write("draining: refusing new work, finishing in-flight requests\n")
        out.flush()
        deadline = time.monotonic() + opts.drain_timeout_s

        def poll() -> None:
            if app.count == 0 or time.monotonic() >= deadline:
                if app.count:
                    logger.warning("drain deadline passed with %d requests in flight", app.count)
                finish()
            else:
                reactor.callLater(0.05, poll)

        # Stop listening so new connections are refused; open keep-alive ones get 503.
        for listener in server.listeners:
            port = getattr(listener, "result", None)
            if port is not None and hasattr(port, "stopListening"):
                port.stopListening()
        reactor.callLater(0.05, poll)

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
    server.run()
