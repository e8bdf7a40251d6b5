"""Run the production server: load and warm every model, then serve on daphne (or uvicorn)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf, eventloop
from ...engine.errors import ModelLoadError
from ...serving import SERVERS, CannotListen, ServeOptions, run_server
from ...workers import run_workers


class Command(BaseCommand):
    help = "Load and warm every configured model, then serve HTTP and WebSocket on daphne (or uvicorn)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default 8000).")
        parser.add_argument("--unix-socket", default=None, help="Listen on this UNIX socket instead of TCP.")
        parser.add_argument("--fd", type=int, default=None, help="Listen on this inherited file descriptor.")
        parser.add_argument(
            "--drain-timeout",
            type=float,
            default=20.0,
            help="Seconds SIGTERM waits for in-flight requests (default 20).",
        )
        parser.add_argument(
            "--read-timeout",
            type=float,
            default=60.0,
            help="Seconds a request's line, headers and body may take to arrive, from when the server begins "
            "reading it; past them it gets a 408 and its connection is closed (default 60; 0: no limit).",
        )
        parser.add_argument(
            "--no-warm", action="store_true", help="Skip loading models before listening (they load on first request)."
        )
        parser.add_argument(
            "--workers", type=int, default=1, help="Processes sharing the port, each with its own models (default 1)."
        )
        parser.add_argument(
            "--backlog",
            type=int,
            default=2048,
            help="Connections the kernel queues before the server accepts them (default 2048, capped by "
            "net.core.somaxconn).",
        )
        parser.add_argument("--access-log", action="store_true", help="Log one line per request to stdout.")
        parser.add_argument(
            "--server",
            choices=SERVERS,
            default=None,
            help="ASGI server (default: EMBED_SERVER, else daphne). uvicorn: httptools, same drain.",
        )

    def handle(self, *args: object, **options: object) -> None:
        opts = ServeOptions(
            host=str(options["host"]),
            port=int(options["port"]),  # type: ignore[arg-type]
            unix_socket=options["unix_socket"],  # type: ignore[arg-type]
            fd=options["fd"],  # type: ignore[arg-type]
            drain_timeout_s=float(options["drain_timeout"]),  # type: ignore[arg-type]
            read_timeout_s=float(options["read_timeout"]),  # type: ignore[arg-type]
            warm=not options["no_warm"],
            access_log=bool(options["access_log"]),
            backlog=int(options["backlog"]),  # type: ignore[arg-type]
            server=str(options["server"] or conf.embeddings().get("SERVER", "daphne")),
            event_loop=str(conf.embeddings().get("EVENT_LOOP", eventloop.DEFAULT)),
        )
        if opts.drain_timeout_s <= 0:
            raise CommandError("--drain-timeout must be > 0")
        if not 0 <= opts.read_timeout_s < float("inf"):
            raise CommandError("--read-timeout must be >= 0")
        if opts.backlog < 1:
            raise CommandError("--backlog must be >= 1")
        workers = int(options["workers"])  # type: ignore[arg-type]
        if workers < 1:
            raise CommandError("--workers must be >= 1")
        if workers > 1:
            if opts.unix_socket or opts.fd is not None:
                raise CommandError("--workers takes --host/--port, not --unix-socket or --fd")
            # manage.py, however this process started: it picks the event loop before Django loads daphne.
            try:
                code = run_workers(opts, workers, Path(settings.BASE_DIR) / "manage.py", self.stdout)
            except CannotListen as exc:
                raise CommandError(str(exc)) from exc
            if code:  # the pool exits with it: 70 for a hung model call, a worker's own for bad settings
                raise CommandError(f"a worker exited with status {code}", returncode=code)
            return
        try:
            run_server(opts, self.stdout)
        except (ModelLoadError, CannotListen) as exc:
            raise CommandError(str(exc)) from exc
