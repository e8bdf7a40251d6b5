"""GET /metrics in Prometheus text format."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import conf, metrics, recorder


async def metrics_view(request: HttpRequest) -> HttpResponse:
    for engine in conf.get_registry().engines():
        metrics.QUEUE_DEPTH.labels(engine.name).set(sum(b.queued_inputs for b in engine.batchers()))
    metrics.LOG_BUFFER.set(recorder.get_recorder().buffered)
    return HttpResponse(
        generate_latest(metrics.registry(conf.metrics_multiproc_dir())), content_type=CONTENT_TYPE_LATEST
    )
