"""The event loop `manage.py serve` runs on: uvloop (the default) or asyncio's own.

daphne installs Twisted's reactor on a loop it makes while Django loads its apps, so the choice is
made before that, by manage.py (`install`); uvicorn is told it directly. On daphne at 100 connections
uvloop took 13 % less of the event loop's CPU per request and served 9 % more (bench/README-backends.md,
"The event loop"). `serve` started another way (`python -m django serve`, `call_command`) keeps the loop
daphne made and says so (vectors.daphne_server).
"""

from __future__ import annotations

import asyncio

from django.core.exceptions import ImproperlyConfigured

LOOPS = ("uvloop", "asyncio")
DEFAULT = "uvloop"


def install(choice: str) -> None:
    """Make the event loops created from now on `choice`'s ('uvloop' or 'asyncio')."""
    if choice not in LOOPS:
        raise ImproperlyConfigured(f"EMBED_EVENT_LOOP={choice!r}: expected {' or '.join(LOOPS)}")
    if choice == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)  # the standard library's, whatever was installed before


def kind(loop: asyncio.AbstractEventLoop) -> str:
    """Name the kind of `loop`: 'uvloop' or 'asyncio'."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
