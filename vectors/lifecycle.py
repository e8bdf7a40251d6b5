"""Process lifecycle state shared by readiness, the views and the production runner."""

from __future__ import annotations

import threading

_draining = threading.Event()


def start_draining() -> None:
    """Mark the process as draining: readiness turns 503 and new requests are refused."""
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()


def reset() -> None:
    """Forget draining (tests)."""
    _draining.clear()
