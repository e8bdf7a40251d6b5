"""Compare each backend/precision with the torch fp32 reference on the fixed multilingual corpus."""

from __future__ import annotations

from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf
from ...quality.corpus import quality_corpus
from ...quality.guard import CPU_COMBINATIONS, HEADER, format_verdict, run_guard


class Command(BaseCommand):
    help = (
        "Quality guard: mean/worst cosine and top-5 neighbour agreement of each configured model (or, with "
        "--all, of every CPU backend/precision) against torch fp32 on the same model; fails below tolerance."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all", action="store_true", help="Every CPU backend/precision of the default (or --model) model."
        )
        parser.add_argument("--model", default=None, help="The configured model to judge (default: all / default).")
        parser.add_argument("--texts", type=int, default=0, help="Use only the first N corpus texts (0 = all 358).")

    def handle(self, *args: object, **options: object) -> None:
        configs = conf.model_configs()
        if options["model"]:
            configs = [c for c in configs if c.name == options["model"]]
            if not configs:
                raise CommandError(f"unknown model {options['model']!r}")
        if options["all"]:
            base = configs[0]
            configs = [
                replace(base, name=f"{backend}-{dtype}", backend=backend, dtype=dtype, device="cpu")
                for backend, dtype in CPU_COMBINATIONS
            ]
        texts = list(quality_corpus())
        if options["texts"]:
            texts = texts[: int(options["texts"])]  # type: ignore[call-overload]
        verdicts = run_guard(configs, texts)
        self.stdout.write(f"{len(texts)} texts; reference: torch fp32 on CPU of the same model")
        self.stdout.write(HEADER)
        for verdict in verdicts:
            self.stdout.write(format_verdict(verdict))
        failed = [v.name for v in verdicts if not v.passed and not (options["all"] and v.skipped)]
        if failed:
            raise CommandError(f"below tolerance or not loadable: {', '.join(failed)}")
