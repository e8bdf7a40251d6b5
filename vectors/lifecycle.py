"""Process lifecycle state shared by readiness, the views and the production runner."""

from __future__ import annotations

import threading

_draining = threading.Event()
_frames_in_flight = 0  # WebSocket frames being answered (touched on the event loop only)


def start_draining() -> None:
    """Mark the process as draining: readiness turns 503 and new requests are refused."""
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()


def reset() -> None:
    """Forget draining (tests)."""
    _draining.clear()


def frame_started() -> None:
    """Count a WebSocket frame being answered (the drain waits for them as for HTTP requests)."""
    global _frames_in_flight
    _frames_in_flight += 1


def frame_finished() -> None:
    global _frames_in_flight
    _frames_in_flight -= 1


def frames_in_flight() -> int:
    return _frames_in_flight
