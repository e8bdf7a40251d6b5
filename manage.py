#!/usr/bin/env python
"""Django's command-line utility for embedservice."""

import os
import sys


def choose_event_loop() -> None:
    """Pick serve's event loop before Django loads its apps: daphne's app puts Twisted's reactor on a
    loop it makes as it is imported (settings are read here, the app registry is not needed)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from vectors import eventloop

    try:
        eventloop.install(settings.EMBEDDINGS.get("EVENT_LOOP", "uvloop"))
    except ImproperlyConfigured as exc:
        sys.exit(f"CommandError: {exc}")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")
    if sys.argv[1:2] == ["serve"]:
        choose_event_loop()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
