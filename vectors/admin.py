"""Admin: the request log (read-only, fast on millions of rows), its latency dashboard, benchmark runs."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from .changelist import CappedCountPaginator, EndpointFilter, ModelFilter, RecentFilter, StatusFilter
from .dashboard.views import dashboard_view
from .models import BenchmarkRun, RequestLog

# The admin index gains a "Monitoring" box linking to the dashboard (the template extends Django's own).
admin.site.index_template = "admin/vectors/index.html"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the service itself: viewable, never added, changed or deleted by hand."""

    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "endpoint",
        "model",
        "status",
        "error_code",
        "inputs",
        "tokens",
        "total_ms",
        "queue_ms",
        "inference_ms",
        "batch_size",
        "caller",
        "request_id",
    )
    list_filter = (RecentFilter, EndpointFilter, ModelFilter, StatusFilter)
    date_hierarchy = "created_at"
    search_fields = ("request_id",)
    search_help_text = "Exact request id (the x-request-id header of the answer): every request that carried it."
    ordering = ("-created_at",)
    sortable_by = ("created_at",)  # only the indexed order; any other would sort the whole table
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    change_list_template = "admin/vectors/requestlog/change_list.html"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Match the request id exactly, through its index (no LIKE scan); clients may reuse an id."""
        term = search_term.strip()
        return (queryset.filter(request_id=term) if term else queryset), False

    def get_urls(self) -> list[URLPattern]:
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard),
            name=f"{self.opts.app_label}_{self.opts.model_name}_dashboard",
        )
        return [dashboard, *super().get_urls()]

    def dashboard(self, request: HttpRequest) -> TemplateResponse:
        return dashboard_view(request, self)


@admin.register(BenchmarkRun)
class BenchmarkRunAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "label",
        "endpoint",
        "mode",
        "concurrency",
        "rate",
        "inputs_per_request",
        "requests_per_s",
        "texts_per_s",
        "p50_ms",
        "p99_ms",
        "errors",
        "ratio",
        "git_revision",
    )
    list_filter = ("endpoint", "mode")
    search_fields = ("label", "git_revision")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
