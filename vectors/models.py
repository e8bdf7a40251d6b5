"""Stored records: one RequestLog row per request, one BenchmarkRun row per benchmark."""

from __future__ import annotations

from django.db import models

from .ids import new_id


def new_entry_id() -> str:
    """Return a fresh request-log row identity (RequestLog.entry_id's default; named by migration 0002)."""
    return new_id()


class RequestLog(models.Model):
    """One API request or WebSocket message, with where its time went. Never the input text by default."""

    # The row's own identity (unique, see Meta), made by the server when the request is logged: a batch
    # written again after a failed attempt that may have committed inserts no row twice. NULL in rows
    # from before it existed, and in rows a previous release writes during a rolling deploy.
    entry_id = models.CharField("entry id", max_length=32, null=True, default=new_entry_id, editable=False)
    # Not unique: a client's own X-Request-ID is echoed and stored, and clients reuse ids and resend them.
    request_id = models.CharField(
        "request id",
        max_length=64,
        help_text="The answer's x-request-id: the client's own when it sent one, so several rows may share it.",
    )
    created_at = models.DateTimeField("time", db_index=True)
    endpoint = models.CharField(max_length=32)
    model = models.CharField(max_length=128, blank=True)
    caller = models.CharField(max_length=128, blank=True, help_text="API key name or client address; never a secret.")
    status = models.PositiveSmallIntegerField()
    error_code = models.CharField("error code", max_length=64, blank=True)
    inputs = models.PositiveIntegerField("inputs", default=0)
    tokens = models.PositiveIntegerField(default=0)
    total_ms = models.FloatField("total ms")
    queue_ms = models.FloatField("queue ms", null=True, blank=True)
    inference_ms = models.FloatField("inference ms", null=True, blank=True)
    batch_size = models.PositiveIntegerField("batch size", null=True, blank=True)
    text_sample = models.CharField(
        "text sample", max_length=200, blank=True, help_text="Only when EMBED_LOG_TEXT is on."
    )

    class Meta:
        verbose_name = "request log"
        verbose_name_plural = "request logs"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["endpoint", "created_at"], name="vectors_log_endpoint_time"),
            models.Index(fields=["model", "created_at"], name="vectors_log_model_time"),
            models.Index(fields=["status", "created_at"], name="vectors_log_status_time"),
            # For the admin's exact search. Meta indexes, not unique=True / db_index=True: on PostgreSQL
            # those add a second (LIKE) index per column, that no query uses and every insert pays for.
            models.Index(fields=["request_id"], name="vectors_log_request_id"),
        ]
        constraints = [models.UniqueConstraint(fields=["entry_id"], name="vectors_log_entry_id")]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.status} {self.total_ms:.1f} ms"


class BenchmarkRun(models.Model):
    """One `manage.py benchmark` run: what was asked, what came out, on which machine and revision."""

    created_at = models.DateTimeField("time", auto_now_add=True, db_index=True)
    label = models.CharField(max_length=200, blank=True)
    endpoint = models.CharField(max_length=32)
    mode = models.CharField(max_length=16, help_text="closed (N clients) or open (fixed arrival rate)")
    concurrency = models.PositiveIntegerField(null=True, blank=True)
    rate = models.FloatField("rate (req/s)", null=True, blank=True)
    duration_s = models.FloatField("duration (s)")
    inputs_per_request = models.PositiveIntegerField("inputs per request", default=1)
    requests_per_s = models.FloatField("requests/s")
    texts_per_s = models.FloatField("texts/s")
    p50_ms = models.FloatField("p50 ms")
    p90_ms = models.FloatField("p90 ms")
    p99_ms = models.FloatField("p99 ms")
    p999_ms = models.FloatField("p99.9 ms")
    max_ms = models.FloatField("max ms")
    errors = models.PositiveIntegerField(default=0)
    limit_texts_per_s = models.FloatField("model limit (texts/s)", null=True, blank=True)
    ratio = models.FloatField("served / limit", null=True, blank=True)
    parameters = models.JSONField(default=dict)
    results = models.JSONField(default=dict)
    machine = models.JSONField(default=dict)
    git_revision = models.CharField("git revision", max_length=64, blank=True)

    class Meta:
        verbose_name = "benchmark run"
        verbose_name_plural = "benchmark runs"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.mode} {self.texts_per_s:.0f} texts/s"
