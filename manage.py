#!/usr/bin/env python
"""Django's command-line utility for embedservice."""

import os
import sys


def choose_event_loop(argv: list[str]) -> None:
    """Pick serve's event loop before Django loads its apps: daphne's app puts Twisted's reactor on a
    loop it makes as it is imported. Settings are read here (the app registry is not needed), after
    --settings and --pythonpath are applied as Django's own command line would apply them."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management.base import CommandParser, handle_default_options

    from vectors import eventloop

    parser = CommandParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--settings")
    parser.add_argument("--pythonpath")
    handle_default_options(parser.parse_known_args(argv[2:])[0])
    try:
        eventloop.install(settings.EMBEDDINGS.get("EVENT_LOOP", eventloop.DEFAULT))
    except ImproperlyConfigured as exc:
        sys.exit(f"CommandError: {exc}")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")
    if sys.argv[1:2] == ["serve"]:
        choose_event_loop(sys.argv)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
