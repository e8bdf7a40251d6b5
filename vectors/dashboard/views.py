"""The latency dashboard page of the admin: figures and server-drawn charts for one window and filter."""

from __future__ import annotations

import time
from datetime import datetime

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from .. import conf, metrics
from ..models import RequestLog
from . import charts, queries
from .figures import LATENCIES, QUANTILES, Figures
from .selection import DEFAULT_WINDOW, WINDOWS, Selection, Window
from .sql import distinct_values

PERCENTILE_COLORS = {0.5: charts.LIGHT_BLUE, 0.95: charts.BLUE, 0.99: charts.AMBER}


def selection_from(request: HttpRequest) -> Selection:
    """Read window, endpoint and model from the query string (unknown windows fall back to the default)."""
    window = WINDOWS.get(request.GET.get("window", ""), WINDOWS[DEFAULT_WINDOW])
    return Selection(window, request.GET.get("endpoint", "")[:32], request.GET.get("model", "")[:128])


def time_label(moment: datetime, window: Window) -> str:
    local = timezone.localtime(moment)
    if window.span.days >= 2:
        return local.strftime("%a %H:%M")
    return local.strftime("%H:%M:%S" if window.bucket_s < 60 else "%H:%M")


def traffic_chart(figures: Figures) -> str:
    window = figures.selection.window
    series = figures.series
    return charts.line_chart(
        "Requests, texts and errors per minute",
        [time_label(b.start, window) for b in series],
        [
            charts.Series("requests/min", [b.requests_per_min for b in series], charts.BLUE),
            charts.Series("texts/min", [b.texts_per_min for b in series], charts.LIGHT_BLUE),
            charts.Series("errors/min", [b.errors_per_min for b in series], charts.RED),
        ],
        unit="per min",
        width=1300,
        height=260,
    )


def latency_chart(figures: Figures) -> str:
    columns = LATENCIES
    return charts.bar_chart(
        "Latency percentiles (ms)",
        ["total", "queue", "inference"],
        [
            charts.Series(f"p{round(q * 100)}", [figures.percentiles[c][q] for c in columns], PERCENTILE_COLORS[q])
            for q in QUANTILES
        ],
        unit="ms",
    )


def status_rows(figures: Figures) -> list[dict]:
    """Rows of the status table: successes first, then each error status and code, with shares."""
    total = figures.requests or 1
    rows = [{"status": "< 400", "code": "ok", "count": figures.requests - figures.error_count}]
    rows += [{"status": e.status, "code": e.error_code or "–", "count": e.count} for e in figures.errors]
    for row in rows:
        row["share"] = 100 * row["count"] / total
    return rows


def error_chart(figures: Figures) -> str:
    by_status: dict[int, int] = {}
    for e in figures.errors:
        by_status[e.status] = by_status.get(e.status, 0) + e.count
    total = figures.requests or 1
    labels = [str(s) for s in by_status]  # the table beside the chart names each status and code
    return charts.bar_chart(
        "Error rate by status (% of requests)",
        labels,
        [charts.Series("% of requests", [100 * n / total for n in by_status.values()], charts.RED)],
        unit="%",
    )


def batch_chart(figures: Figures) -> str:
    total = sum(n for _, n in figures.batch_sizes) or 1
    return charts.bar_chart(
        "Batch size each request rode in (% of requests)",
        [label for label, _ in figures.batch_sizes],
        [charts.Series("% of requests", [100 * n / total for _, n in figures.batch_sizes], charts.BLUE)],
        unit="%",
    )


def recorder_figures(multiproc_dir: str) -> dict[str, float]:
    """The recorder's counters from the Prometheus registry: the very figures /metrics shows."""
    totals = metrics.recorder_totals(multiproc_dir)
    return {
        "buffered": totals["buffered"],
        "written": totals["written"],
        "flush_failures": totals["flush_failures"],
        "dropped": totals["dropped"],
        "dropped_buffer_full": totals.get("dropped_buffer_full", 0.0),
        "dropped_rejected": totals.get("dropped_rejected", 0.0),
        "dropped_other": totals.get("dropped_stopped", 0.0) + totals.get("dropped_write_error", 0.0),
    }


def dashboard_view(request: HttpRequest, model_admin: admin.ModelAdmin) -> TemplateResponse:
    """Render the dashboard (the admin site has already required an active staff login)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    started = time.perf_counter()
    selection = selection_from(request)
    figures = queries.figures(selection)
    multiproc_dir = conf.metrics_multiproc_dir()
    quantile_names = [f"p{round(q * 100)}" for q in QUANTILES]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Latency dashboard",
        "opts": RequestLog._meta,
        "selection": selection,
        "figures": figures,
        "windows": list(WINDOWS.values()),
        "endpoints": distinct_values(RequestLog, "endpoint"),
        "models": distinct_values(RequestLog, "model"),
        "rates": {
            "requests_per_min": figures.requests / figures.minutes,
            "texts_per_min": figures.texts / figures.minutes,
            "error_rate": 100 * figures.error_count / figures.requests if figures.requests else 0.0,
        },
        "percentile_rows": [
            {"name": column.removesuffix("_ms"), "values": [figures.percentiles[column][q] for q in QUANTILES]}
            for column in LATENCIES
        ],
        "quantile_names": quantile_names,
        "status_rows": status_rows(figures),
        "charts": {
            "traffic": traffic_chart(figures),
            "latency": latency_chart(figures),
            "errors": error_chart(figures),
            "batches": batch_chart(figures),
        },
        "headline": [(f"p{round(q * 100)}", figures.percentiles["total_ms"][q]) for q in QUANTILES],
        "recorder": recorder_figures(multiproc_dir),
        "multiprocess": bool(multiproc_dir),
    }
    context["elapsed_ms"] = (time.perf_counter() - started) * 1000
    return TemplateResponse(request, "admin/vectors/dashboard.html", context)
