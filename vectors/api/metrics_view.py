"""GET /metrics in Prometheus text format."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import conf, metrics, recorder
from .errors import MethodNotAllowed, json_error

ALLOWED = ("GET", "HEAD")


@csrf_exempt  # nothing here changes state; other methods get the API's 405, not the CSRF page
async def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ALLOWED:
        response = json_error(MethodNotAllowed(f'Method "{request.method}" not allowed.'))
        response["Allow"] = ", ".join(ALLOWED)
        return response
    for engine in conf.get_registry().engines():
        metrics.QUEUE_DEPTH.labels(engine.name).set(sum(b.queued_inputs for b in engine.batchers()))
    metrics.LOG_BUFFER.set(recorder.get_recorder().buffered)
    return HttpResponse(
        generate_latest(metrics.registry(conf.metrics_multiproc_dir())), content_type=CONTENT_TYPE_LATEST
    )
