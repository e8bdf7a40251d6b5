"""Prometheus metrics: one place declares them; views, batcher hook and recorder update them."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from .engine.batches import BatchStats

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
QUEUE_DEPTH = Gauge("embed_queue_inputs", "Texts waiting for a batch", ["model"], multiprocess_mode="livesum")

# The request-log recorder (vectors.recorder): the admin dashboard shows these same figures.
LOG_BUFFER = Gauge(
    "embed_log_buffer_rows", "Request-log rows waiting to be written to the database", multiprocess_mode="livesum"
)
LOG_WRITTEN = Counter("embed_log_rows_written", "Request-log rows written to the database")
LOG_DROPPED = Counter(
    "embed_log_rows_dropped", "Request-log rows lost: buffer_full, rejected, stopped or write_error", ["reason"]
)
LOG_FLUSH_FAILURES = Counter("embed_log_flush_failures", "Failed attempts to write a batch of request-log rows")


def registry(multiproc_dir: str = "") -> CollectorRegistry:
    """Return what /metrics exposes: this process, or every worker's files when `multiproc_dir` is set."""
    if not multiproc_dir:
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=multiproc_dir)
    return combined


def recorder_totals(multiproc_dir: str = "") -> dict[str, float]:
    """Return the recorder's figures (all workers together when multiprocess): buffered, written, failures, dropped."""
    totals: dict[str, float] = {"buffered": 0.0, "written": 0.0, "flush_failures": 0.0, "dropped": 0.0}
    names = {
        "embed_log_buffer_rows": "buffered",
        "embed_log_rows_written_total": "written",
        "embed_log_flush_failures_total": "flush_failures",
        "embed_log_rows_dropped_total": "dropped",
    }
    for family in registry(multiproc_dir).collect():
        for sample in family.samples:
            key = names.get(sample.name)
            if key is not None:
                totals[key] += sample.value
                if key == "dropped":
                    reason = f"dropped_{sample.labels.get('reason', '')}"
                    totals[reason] = totals.get(reason, 0.0) + sample.value
    return totals


def declare_models(names: list[str]) -> None:
    """Expose every served model's counters at 0 from the start, so a scrape before traffic sees them."""
    for name in names:
        MODEL_CALLS.labels(name)
        TEXTS.labels(name)


def observe_batch(model: str, stats: BatchStats) -> None:
    """Record one model call."""
    MODEL_CALLS.labels(model).inc()
    TEXTS.labels(model).inc(stats.size)
    BATCH_SIZE.labels(model).observe(stats.size)
    INFERENCE_SECONDS.labels(model).observe(stats.inference_ms / 1000)


def observe_request(endpoint: str, model: str, status: int, total_ms: float, queue_ms: float | None) -> None:
    """Record one answered API request."""
    count, seconds = _request_series(endpoint, model, status)
    count.inc()
    seconds.observe(total_ms / 1000)
    if queue_ms is not None:
        _queue_series(model).observe(queue_ms / 1000)


# The labelled series a request updates, looked up once per label values: `labels()` checks and joins its
# values under a lock on every call, and this runs on the event loop for every request. The values are
# bounded (endpoints, served model names or "unknown", HTTP statuses), and so are these caches.
@functools.cache
def _request_series(endpoint: str, model: str, status: int) -> tuple[Counter, Histogram]:
    return REQUESTS.labels(endpoint, model, str(status)), REQUEST_SECONDS.labels(endpoint, model)


@functools.cache
def _queue_series(model: str) -> Histogram:
    return QUEUE_SECONDS.labels(model)
