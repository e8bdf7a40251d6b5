"""The request log's entry point: one process-wide write-behind recorder, and `add_request` to feed it."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from django.core.signals import setting_changed
from django.dispatch import receiver

from . import conf
from .logstore import DatabaseSink
from .logwriter import RETRY_FIRST_S, LogEntry, Recorder, Sink

__all__ = ["RETRY_FIRST_S", "LogEntry", "Recorder", "Sink", "add_request", "get_recorder", "set_recorder"]

TEXT_SAMPLE_CHARS = 200  # RequestLog.text_sample's size

_recorder: Recorder | None = None
_from_settings: Recorder | None = None  # the one get_recorder() made from settings; only it follows them
_create_lock = threading.Lock()


def get_recorder() -> Recorder:
    """Return this process's recorder, writing to the database in settings (created on first use)."""
    global _recorder, _from_settings
    if _recorder is None:
        with _create_lock:
            if _recorder is None:
                config = conf.log_config()
                _recorder = _from_settings = Recorder(config, DatabaseSink(config.database, config.max_rows))
    return _recorder


def set_recorder(recorder: Recorder | None) -> Recorder | None:
    """Install `recorder` as the process recorder (tests); return the one it replaces."""
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


def add_request(
    *,
    request_id: str,
    endpoint: str,
    model: str,
    caller: str,
    status: int,
    total_ms: float,
    error_code: str = "",
    inputs: int = 0,
    tokens: int = 0,
    queue_ms: float | None = None,
    inference_ms: float | None = None,
    batch_size: int | None = None,
    text: str = "",
) -> None:
    """Log one answered request (or WebSocket message); cheap, never blocks, never raises."""
    recorder = get_recorder()
    if not recorder.config.enabled:
        return  # EMBED_LOG_REQUESTS=0: not even the entry is built (the hot path's loop pays for it)
    recorder.add(
        LogEntry(
            request_id=request_id[:64],
            created_at=datetime.now(UTC),
            endpoint=endpoint[:32],
            model=model[:128],
            caller=caller[:128],
            status=status,
            error_code=error_code[:64],
            inputs=max(inputs, 0),
            tokens=max(tokens, 0),
            total_ms=total_ms,
            queue_ms=queue_ms,
            inference_ms=inference_ms,
            batch_size=batch_size,
            text_sample=text[:TEXT_SAMPLE_CHARS] if recorder.config.log_text else "",
        )
    )


def _forget_after_fork() -> None:
    # A forked worker must not share the parent's buffer or writer thread; it makes its own.
    set_recorder(None)


os.register_at_fork(after_in_child=_forget_after_fork)


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: object) -> None:
    # The recorder made from settings is made again from the new ones. One installed with set_recorder
    # (a test's) is its installer's: replacing it would start a database writer behind the test's back.
    if setting == "EMBEDDINGS" and _recorder is not None and _recorder is _from_settings:
        set_recorder(None).stop(timeout_s=1.0)  # type: ignore[union-attr]
