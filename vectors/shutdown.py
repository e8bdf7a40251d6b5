"""Callbacks to run once when the process stops normally (the log recorder flushes here)."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)
_hooks: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> None:
    """Run `hook` when the server stops normally."""
    if hook not in _hooks:
        _hooks.append(hook)


def run_hooks() -> None:
    """Run every registered hook once; a failing hook is logged and the rest still run."""
    while _hooks:
        hook = _hooks.pop(0)
        try:
            hook()
        except Exception:
            logger.exception("shutdown hook %r failed", hook)
