"""Load each configured model once so its onnx/openvino export (and int8 rewrite) is on disk before serving,
then hold every model that is not torch fp32 to the quality guard: a deploy step that runs this fails
instead of serving a faster model that is a worse one."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf
from ...engine import export
from ...engine.encoder import Encoder
from ...engine.errors import ModelLoadError
from ...quality.guard import HEADER, format_verdict, run_guard


class Command(BaseCommand):
    help = "Export/quantise the configured models now (cached on disk), so the first start does not have to."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", action="append", default=[], help="Only this model name (repeatable).")
        parser.add_argument(
            "--skip-quality",
            action="store_true",
            help="Do not compare the prepared models with torch fp32 on the quality corpus (the guard).",
        )

    def handle(self, *args: object, **options: object) -> None:
        configs = conf.model_configs()
        wanted = list(options["model"])  # type: ignore[call-overload]
        unknown = sorted(set(wanted) - {c.name for c in configs})
        if unknown:
            raise CommandError(f"unknown model(s) {unknown}; configured: {[c.name for c in configs]}")
        judged: dict[str, Encoder] = {}  # models to hold to the guard, with the encoder just loaded
        for config in configs:
            if wanted and config.name not in wanted:
                continue
            before, started = sum(export.exports.values()), time.perf_counter()
            try:
                encoder = Encoder(config)
            except ModelLoadError as exc:
                raise CommandError(str(exc)) from None
            ran = sum(export.exports.values()) - before
            took = f"{time.perf_counter() - started:.1f} s"
            head = f"{config.name}: {config.backend} {config.dtype} on {encoder.device}"
            if encoder.artifact is None:
                self.stdout.write(f"{head}: nothing to export (torch reads the weights directly); loaded in {took}")
            elif ran:
                self.stdout.write(
                    f"{head}: exported ({ran} step{'s' if ran != 1 else ''}) in {took} to {encoder.artifact}"
                )
            else:
                self.stdout.write(f"{head}: already prepared, loaded in {took} from {encoder.artifact}")
            if (config.backend, config.dtype) != ("torch", "fp32") and not options["skip_quality"]:
                judged[config.name] = encoder
        if judged:
            # The models judged are the encoders already loaded; only each model's reference loads anew.
            judged_configs = [c for c in configs if c.name in judged]
            verdicts = run_guard(judged_configs, make_encoder=lambda c: judged.pop(c.name, None) or Encoder(c))
            self.stdout.write("quality against torch fp32 of the same model (manage.py embedquality):")
            self.stdout.write(HEADER)
            for verdict in verdicts:
                self.stdout.write(format_verdict(verdict))
            failed = [v.name for v in verdicts if not v.passed]
            if failed:
                raise CommandError(
                    f"below the quality tolerance: {', '.join(failed)}; pick another dtype or backend for it "
                    "(--skip-quality prepares it anyway)"
                )
