"""Delete old request-log rows: those past an age, and those past EMBED_LOG_MAX_ROWS."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf, retention


class Command(BaseCommand):
    help = "Delete RequestLog rows older than an age (--older-than 7d) and/or beyond a row count (--max-rows)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", help="Delete rows older than this age: 90s, 30m, 12h, 7d, 2w.")
        parser.add_argument(
            "--max-rows",
            type=int,
            default=None,
            help="Then keep at most this many rows, oldest going first (default: EMBED_LOG_MAX_ROWS; 0 = no bound).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(self, *args: object, **options: object) -> None:
        max_rows = conf.log_config().max_rows if options["max_rows"] is None else int(options["max_rows"])  # type: ignore[arg-type]
        if max_rows < 0:
            raise CommandError("--max-rows must be >= 0")
        if not options["older_than"] and not max_rows:
            raise CommandError("say what to delete: --older-than AGE and/or --max-rows N (or set EMBED_LOG_MAX_ROWS)")
        using = str(options["database"])
        dry_run = bool(options["dry_run"])
        if options["older_than"]:
            try:
                age = retention.parse_age(str(options["older_than"]))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if dry_run:
                count = retention.count_older_than(age, using=using)
                self.stdout.write(f"would delete {count} rows older than {options['older_than']}")
            else:
                count = retention.prune_older_than(age, using=using)
                self.stdout.write(f"deleted {count} rows older than {options['older_than']}")
        if max_rows:
            if dry_run:
                count = retention.count_beyond(max_rows, using=using)
                self.stdout.write(f"would delete {count} rows beyond the newest {max_rows}")
            else:
                count = retention.trim_to(max_rows, using=using)
                self.stdout.write(f"deleted {count} rows beyond the newest {max_rows}")
