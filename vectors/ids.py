"""Fresh ids for requests and request-log rows: 32 hex digits, unique across processes and restarts."""

from __future__ import annotations

import itertools
import os

_counter = itertools.count()
_prefix = ""


def _draw_prefix() -> None:
    global _prefix
    _prefix = os.urandom(8).hex()  # a process of its own (also a forked worker) gets its own


_draw_prefix()
os.register_at_fork(after_in_child=_draw_prefix)


def new_id() -> str:
    """Return a fresh id: 32 hex digits, like uuid4().hex, but one random draw per process, not per call.

    Random per process, then a counter: no getrandom() system call on every request of the event loop.
    """
    return f"{_prefix}{next(_counter) & 0xFFFFFFFFFFFFFFFF:016x}"
