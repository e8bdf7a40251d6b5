"""After each embedding request: timing headers, Prometheus metrics and the request log, for both adapters."""

from __future__ import annotations

from .. import conf, metrics, recorder
from ..ids import new_id
from . import core

new_request_id = new_id  # the x-request-id of a request that brought none


def raw_request_id(sent: bytes | None) -> str:
    """The x-request-id for an answer a server writes on the socket itself: the client's, where it is what
    a server would accept in a raw header (printable ASCII, at most 200 characters), else one of our own."""
    text = (sent or b"").decode("latin-1")
    return text if text and text.isascii() and text.isprintable() and len(text) <= 200 else new_request_id()


def timing_headers(request_id: str, total_ms: float, outcome: core.EmbedOutcome | None) -> list[tuple[str, str]]:
    """Return TEI-style timing headers (ms) plus the request id and batch size."""
    headers = [("x-request-id", request_id), ("x-total-time", f"{total_ms:.2f}")]
    if outcome is not None:
        headers += [
            ("x-queue-time", f"{outcome.queue_ms:.2f}"),
            ("x-inference-time", f"{outcome.inference_ms:.2f}"),
            ("x-batch-size", str(outcome.batch_size)),
        ]
    return headers


def served_name(model: str | None) -> str:
    """A served model's name, or "unknown": a caller's arbitrary string never becomes a metric label."""
    if not model:
        return ""
    return model if model in conf.get_registry().names else "unknown"


def account(
    *,
    endpoint: str,
    status: int,
    total_ms: float,
    outcome: core.EmbedOutcome | None,
    model: str = "",
    error_code: str = "",
    caller: str = "",
    request_id: str = "",
    inputs: int = 0,
) -> None:
    """Record one answered request in metrics (and the request log); never raises into the request."""
    model = outcome.model if outcome else served_name(model)
    metrics.observe_request(endpoint, model, status, total_ms, outcome.queue_ms if outcome else None)
    recorder.add_request(
        request_id=request_id or new_request_id(),
        endpoint=endpoint,
        model=model,
        caller=caller,
        status=status,
        total_ms=total_ms,
        error_code=error_code,
        inputs=len(outcome.vectors) if outcome else inputs,
        tokens=outcome.prompt_tokens if outcome else 0,
        queue_ms=outcome.queue_ms if outcome else None,
        inference_ms=outcome.inference_ms if outcome else None,
        batch_size=outcome.batch_size if outcome else None,
        text=outcome.first_text if outcome else "",
    )
