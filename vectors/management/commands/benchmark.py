"""Load-test the service: throughput, latency percentiles, the model's limit, and the write-up's experiment."""

from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...loadtest import endpoints
from ...loadtest.corpus import CorpusError
from ...loadtest.limit import LimitError
from ...loadtest.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DURATION_S,
    DEFAULT_ENDPOINT,
    DEFAULT_OPEN_CONNECTIONS,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WARMUP_S,
    BenchmarkOptions,
    InvalidOptions,
    parse_batch_sizes,
    validate,
)
from ...loadtest.report import format_report
from ...loadtest.runner import run_benchmark
from ...loadtest.server import TargetError


class Command(BaseCommand):
    help = (
        "Load-test the service with keep-alive HTTP clients and report requests/s, texts/s, latency "
        "percentiles (HDR histogram), status counts and the server's queue/inference split. Without --url "
        "it starts `manage.py serve` on a free loopback port and stops it afterwards. Every run is stored "
        "as a BenchmarkRun row."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_argument_group("target")
        target.add_argument(
            "--url",
            help="Base URL of a running server (e.g. http://127.0.0.1:8000). Default: start one on a free "
            "loopback port with the same settings as the README's run command, and stop it afterwards.",
        )
        target.add_argument("--allow-remote", action="store_true", help="Allow a --url that is not a loopback address.")
        target.add_argument(
            "--api-key",
            help="An API key (`manage.py apikey create`), sent as `Authorization: Bearer` with every request and "
            "WebSocket handshake, for a server that requires keys; never stored with the run.",
        )
        target.add_argument(
            "--endpoint",
            choices=sorted(endpoints.ENDPOINTS),
            help=f"What to load (default {DEFAULT_ENDPOINT}): "
            + "; ".join(f"{e.name} = {e.description}" for e in endpoints.ENDPOINTS.values())
            + ". The bench-* baselines need a server with EMBED_BENCH_VIEWS=1.",
        )

        load = parser.add_argument_group("load")
        load.add_argument(
            "--concurrency",
            type=int,
            help=f"Closed loop: N clients, each sending its next request when the last is answered "
            f"(default {DEFAULT_CONCURRENCY}).",
        )
        load.add_argument(
            "--rate",
            type=float,
            help="Open loop: R requests/s at fixed arrival times, whatever the answers do; latency counts "
            "from each request's scheduled time, so a stall cannot hide tail latency.",
        )
        load.add_argument(
            "--connections",
            type=int,
            help=f"Open loop only: most connections kept open (default {DEFAULT_OPEN_CONNECTIONS}); "
            "requests beyond them wait, and the wait counts as latency.",
        )
        load.add_argument("--duration", type=float, help=f"Seconds to measure (default {DEFAULT_DURATION_S:g}).")
        load.add_argument("--requests", type=int, help="Measure this many requests instead of a duration.")
        load.add_argument(
            "--warmup",
            type=float,
            default=DEFAULT_WARMUP_S,
            help=f"Seconds of the same load before measuring starts (default {DEFAULT_WARMUP_S:g}).",
        )
        load.add_argument(
            "--inputs-per-request",
            type=int,
            default=1,
            help="Texts in each request (default 1; more needs openai-float, openai-base64 or tei).",
        )
        load.add_argument(
            "--corpus",
            type=Path,
            help="UTF-8 file, one text per line (default: the built-in 20,000 unique English and Chinese short texts).",
        )
        load.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT_S,
            help=f"Seconds before a request counts as a timeout (default {DEFAULT_TIMEOUT_S:g}).",
        )

        experiments = parser.add_argument_group("experiments")
        experiments.add_argument(
            "--limit",
            action="store_true",
            help="Also measure the model's offline batched throughput in a separate process (same model, "
            "same torch threads, before the load) and print served/limit.",
        )
        experiments.add_argument(
            "--limit-batch-sizes",
            default="16,32,64,128",
            help="Batch sizes --limit tries; the best counts (default 16,32,64,128).",
        )
        experiments.add_argument(
            "--limit-seconds",
            type=float,
            default=3.0,
            help="Seconds --limit spends on each batch size (default 3).",
        )
        experiments.add_argument(
            "--compare",
            action="store_true",
            help="Run the same load against (a) a sync view calling model.encode per request, (b) an async "
            "view awaiting sync_to_async(model.encode) per request, (c) the micro-batched /get_vector, "
            "and print one table with the ratios.",
        )

        output = parser.add_argument_group("output")
        output.add_argument("--json", type=Path, help="Also write every figure to this JSON file.")
        output.add_argument(
            "--plot", type=Path, help="Also draw latency by percentile and throughput over time to this PNG file."
        )
        progress = output.add_mutually_exclusive_group()
        progress.add_argument(
            "--progress",
            action="store_true",
            default=None,
            help="Show the live progress line on stderr (default: only when stderr is a terminal).",
        )
        progress.add_argument(
            "--no-progress", dest="progress", action="store_false", help="Never show the progress line."
        )
        output.add_argument("--label", default="", help="A note stored with the run (e.g. 'after tuning').")
        output.add_argument("--no-store", action="store_true", help="Do not store the run as a BenchmarkRun row.")

    def handle(self, *args: object, **options: object) -> None:
        try:
            opts = validate(
                BenchmarkOptions(
                    url=options["url"],  # type: ignore[arg-type]
                    allow_remote=bool(options["allow_remote"]),
                    endpoint=options["endpoint"],  # type: ignore[arg-type]
                    concurrency=options["concurrency"],  # type: ignore[arg-type]
                    rate=options["rate"],  # type: ignore[arg-type]
                    connections=options["connections"],  # type: ignore[arg-type]
                    duration_s=options["duration"],  # type: ignore[arg-type]
                    requests=options["requests"],  # type: ignore[arg-type]
                    warmup_s=float(options["warmup"]),  # type: ignore[arg-type]
                    inputs_per_request=int(options["inputs_per_request"]),  # type: ignore[arg-type]
                    corpus=options["corpus"],  # type: ignore[arg-type]
                    timeout_s=float(options["timeout"]),  # type: ignore[arg-type]
                    limit=bool(options["limit"]),
                    limit_batch_sizes=parse_batch_sizes(str(options["limit_batch_sizes"])),
                    limit_seconds=float(options["limit_seconds"]),  # type: ignore[arg-type]
                    compare=bool(options["compare"]),
                    json_path=options["json"],  # type: ignore[arg-type]
                    plot_path=options["plot"],  # type: ignore[arg-type]
                    progress=options["progress"],  # type: ignore[arg-type]
                    label=str(options["label"]),
                    store=not options["no_store"],
                    api_key=options["api_key"] or None,  # type: ignore[arg-type]
                )
            )
        except InvalidOptions as exc:
            raise CommandError(str(exc)) from exc
        show_progress = opts.progress if opts.progress is not None else sys.stderr.isatty()
        try:
            report = run_benchmark(
                opts,
                Path(settings.BASE_DIR) / "manage.py",
                progress=sys.stderr if show_progress else None,
                log=self.stderr if int(options["verbosity"]) >= 1 else None,  # type: ignore[arg-type]
            )
        except (TargetError, LimitError, CorpusError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(format_report(report), ending="")
        if report.stored_ids:
            self.stdout.write(f"stored as BenchmarkRun {', '.join(map(str, report.stored_ids))}\n")
        for flag, path in (("json", opts.json_path), ("plot", opts.plot_path)):
            if path is not None:
                self.stdout.write(f"{flag} written to {path}\n")
