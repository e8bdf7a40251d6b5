"""Keep every run: one BenchmarkRun row per load run of a benchmark."""

from __future__ import annotations

from django.db import DatabaseError

from ..models import BenchmarkRun
from .result import BenchmarkReport


class StoreError(RuntimeError):
    """The rows could not be written (typically: the database is not migrated)."""


def save(report: BenchmarkReport) -> list[int]:
    """Write one row per load run and return their ids.

    Raises:
        StoreError: the database refused the rows.
    """
    opts = report.options
    parameters = {**opts.to_dict(), "target": report.target, "started_server": report.started_server}
    parameters["model"] = report.model
    rows = []
    for run in report.runs:
        summary = run.summary
        latency = summary.latency
        label = opts.label
        if opts.compare:
            label = f"{label} compare: {run.design}".strip()
        rows.append(
            BenchmarkRun(
                label=label[:200],
                endpoint=run.endpoint,
                mode=opts.mode,
                concurrency=opts.concurrency,
                rate=opts.rate,
                duration_s=summary.elapsed_s,
                inputs_per_request=opts.inputs_per_request,
                requests_per_s=summary.requests_per_s,
                texts_per_s=summary.texts_per_s,
                p50_ms=latency.p50_ms,
                p90_ms=latency.p90_ms,
                p99_ms=latency.p99_ms,
                p999_ms=latency.p999_ms,
                max_ms=latency.max_ms,
                errors=summary.errors,
                limit_texts_per_s=report.limit.texts_per_s if report.limit else None,
                ratio=report.ratio(run),
                parameters=parameters,
                results={
                    **run.to_dict(),
                    "limit": report.limit.to_dict() if report.limit else None,
                    "notes": report.notes,
                },
                machine=report.machine,
                git_revision=report.git_revision[:64],
            )
        )
    try:
        for row in rows:
            row.save()
    except DatabaseError as exc:
        raise StoreError(f"the run was not stored ({exc}); run `manage.py migrate` first") from exc
    return [row.pk for row in rows]
