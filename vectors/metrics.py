"""Prometheus metrics: one place declares them; views, batcher hook and recorder update them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .engine.batcher import BatchStats

LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS = Counter(
    "embed_requests", "API requests answered, by endpoint, model and status", ["endpoint", "model", "status"]
)
REQUEST_SECONDS = Histogram(
    "embed_request_seconds", "Total time to answer an API request", ["endpoint", "model"], buckets=LATENCY_BUCKETS_S
)
QUEUE_SECONDS = Histogram(
    "embed_queue_seconds", "Time a request waited before its batch started", ["model"], buckets=LATENCY_BUCKETS_S
)
INFERENCE_SECONDS = Histogram(
    "embed_inference_seconds", "Duration of one model call (one batch)", ["model"], buckets=LATENCY_BUCKETS_S
)
BATCH_SIZE = Histogram("embed_batch_size", "Texts per model call", ["model"], buckets=BATCH_BUCKETS)
MODEL_CALLS = Counter("embed_model_calls", "Model calls (batches) run", ["model"])
TEXTS = Counter("embed_texts", "Texts encoded", ["model"])
QUEUE_DEPTH = Gauge("embed_queue_inputs", "Texts waiting for a batch", ["model"])


def observe_batch(model: str, stats: BatchStats) -> None:
    """Record one model call."""
    MODEL_CALLS.labels(model).inc()
    TEXTS.labels(model).inc(stats.size)
    BATCH_SIZE.labels(model).observe(stats.size)
    INFERENCE_SECONDS.labels(model).observe(stats.inference_ms / 1000)


def observe_request(endpoint: str, model: str, status: int, total_ms: float, queue_ms: float | None) -> None:
    """Record one answered API request."""
    REQUESTS.labels(endpoint, model, str(status)).inc()
    REQUEST_SECONDS.labels(endpoint, model).observe(total_ms / 1000)
    if queue_ms is not None:
        QUEUE_SECONDS.labels(model).observe(queue_ms / 1000)
