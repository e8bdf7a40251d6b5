"""Manage API keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from rest_framework_api_key.models import APIKey

from ... import auth


class Command(BaseCommand):
    help = "Create, list or revoke API keys (stored hashed; a new key is printed once and never again)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a key and print it once.")
        create.add_argument("name", help="Who uses the key (shown in logs and the admin; not secret).")
        create.add_argument("--expires-days", type=int, default=None, help="Days until the key expires.")
        actions.add_parser("list", help="List keys: prefix, name, created, expiry, revoked. Never the key.")
        revoke = actions.add_parser("revoke", help="Revoke keys by name or prefix.")
        revoke.add_argument("name_or_prefix")

    def handle(self, *args: object, **options: object) -> None:
        action = options["action"]
        if action == "create":
            name = str(options["name"]).strip()
            if not name:
                raise CommandError("the key needs a non-empty name")
            longest = APIKey._meta.get_field("name").max_length
            if len(name) > longest:
                raise CommandError(f"the key's name has {len(name)} characters; at most {longest}")
            days = options["expires_days"]
            if days is not None and int(days) <= 0:  # type: ignore[arg-type]
                raise CommandError("--expires-days must be > 0")
            try:
                expiry = timezone.now() + timedelta(days=int(days)) if days else None  # type: ignore[arg-type]
            except OverflowError:
                raise CommandError(f"--expires-days {days}: that date is past the year 9999") from None
            key, raw = APIKey.objects.create_key(name=name, expiry_date=expiry)
            self.stdout.write(f"created key {key.prefix} for {name!r}; store it now, it is not shown again:\n{raw}")
        elif action == "list":
            for key in APIKey.objects.order_by("created"):
                expiry = key.expiry_date.isoformat() if key.expiry_date else "never"
                state = "revoked" if key.revoked else ("expired" if key.has_expired else "active")
                self.stdout.write(
                    f"{key.prefix}  {key.name}  created {key.created:%Y-%m-%d %H:%M}  expires {expiry}  {state}"
                )
        else:
            target = str(options["name_or_prefix"])
            keys = APIKey.objects.filter(revoked=False).filter(name=target) | APIKey.objects.filter(
                revoked=False, prefix=target
            )
            count = 0
            for key in keys:
                key.revoked = True
                key.save()
                count += 1
            if not count:
                raise CommandError(f"no active key named or prefixed {target!r}")
            auth.forget_keys()
            self.stdout.write(f"revoked {count} key(s)")
