"""Readable tables for stdout: one run in detail, or the three designs side by side with their ratios."""

from __future__ import annotations

from .load import LoadResult
from .result import BenchmarkReport
from .stats import STATUS_CLASSES


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _load_line(report: BenchmarkReport) -> str:
    opts = report.options
    if opts.rate is not None:
        load = f"open loop, {opts.rate:g} req/s (up to {opts.connections} connections)"
    else:
        load = f"closed loop, {opts.concurrency} concurrent clients"
    length = f"{opts.duration_s:g} s" if opts.duration_s is not None else f"{opts.requests} requests"
    inputs = f"{opts.inputs_per_request} text{'s' if opts.inputs_per_request != 1 else ''}/request"
    return f"{load}, {length} after {opts.warmup_s:g} s warm-up, {inputs}"


def header(report: BenchmarkReport) -> list[str]:
    machine = report.machine
    target = f"{report.target} ({'started by this benchmark' if report.started_server else 'running server'})"
    cores = machine.get("usable_cores") or machine.get("cores")
    box = (
        f"{machine.get('cpu') or 'unknown CPU'}, {cores} cores, {machine.get('ram_gib')} GiB RAM, "
        f"torch {machine.get('torch') or '-'} ({machine.get('torch_threads')} threads)"
    )
    lines = [
        f"target     {target}",
        f"model      {report.model or '-'}",
        f"load       {_load_line(report)}",
        f"machine    {box}",
    ]
    if report.git_revision:
        lines.append(f"revision   {report.git_revision}")
    return lines


def run_lines(report: BenchmarkReport, run: LoadResult) -> list[str]:
    summary = run.summary
    latency = summary.latency
    statuses = "  ".join(f"{name} {summary.statuses.get(name, 0)}" for name in STATUS_CLASSES)
    lines = [
        f"endpoint     {run.endpoint}: {run.design}",
        f"throughput   {summary.requests_per_s:10.1f} requests/s {summary.texts_per_s:10.1f} texts/s"
        f"   ({summary.ok} answered 2xx in {summary.elapsed_s:.1f} s)",
        f"latency ms   p50 {latency.p50_ms:.1f}   p90 {latency.p90_ms:.1f}   p99 {latency.p99_ms:.1f}"
        f"   p99.9 {latency.p999_ms:.1f}   max {latency.max_ms:.1f}   (mean {latency.mean_ms:.1f})",
        f"responses    {statuses}",
    ]
    split = []
    if summary.server_queue_ms is not None:
        split.append(f"queue {_ms(summary.server_queue_ms)} ms")
        split.append(f"inference {_ms(summary.server_inference_ms)} ms (means per request)")
    if run.mean_batch_size is not None:
        split.append(f"mean batch {run.mean_batch_size:.1f} texts ({run.batches.model_calls} model calls)")  # type: ignore[union-attr]
    lines.append("server       " + ("   ".join(split) if split else "no timing headers or /metrics counters"))
    if run.client_cpu_share is not None:
        lines.append(f"client       the load generator used {run.client_cpu_share:.2f} of a core while it ran")
    return lines


def limit_lines(report: BenchmarkReport) -> list[str]:
    limit = report.limit
    if limit is None:
        return []
    sizes = ", ".join(f"{size}: {rate:.0f}" for size, rate in sorted(limit.by_batch_size.items()))
    if limit.parallel_by_batch_size:
        together = ", ".join(f"{size}: {rate:.0f}" for size, rate in sorted(limit.parallel_by_batch_size.items()))
        sizes += f"; {limit.parallel} at once: {together}"
    lines = [
        f"model limit  {limit.texts_per_s:10.1f} texts/s offline, best batch size {limit.best_batch_size}"
        f"   (texts/s by batch size: {sizes})"
    ]
    for run in report.runs:
        ratio = report.ratio(run)
        if ratio is not None:
            served = run.summary.texts_per_s
            lines.append(
                f"served/limit {ratio:10.2f}   ({served:.1f} / {limit.texts_per_s:.1f} texts/s, {run.endpoint})"
            )
    return lines


def format_run(report: BenchmarkReport) -> str:
    """Return the table for a single-endpoint run."""
    lines = ["embedservice benchmark", *header(report), ""]
    for run in report.runs:
        lines += run_lines(report, run)
    lines += limit_lines(report)
    lines += [f"note         {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def format_comparison(report: BenchmarkReport) -> str:
    """Return the sync / async / batched table with each design's figures and the ratios between them."""
    lines = ["embedservice benchmark: the write-up's experiment", *header(report), ""]
    names = ("req/s", "texts/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
    columns = f"{'design':<48} " + " ".join(f"{name:>8}" for name in names) + f" {'errors':>7} {'batch':>6}"
    lines += [columns, "-" * len(columns)]
    for run in report.runs:
        s, lat = run.summary, run.summary.latency
        batch = f"{run.mean_batch_size:.1f}" if run.mean_batch_size is not None else "1"
        lines.append(
            f"{run.design:<48} {s.requests_per_s:8.1f} {s.texts_per_s:8.1f} {lat.p50_ms:8.1f} {lat.p90_ms:8.1f}"
            f" {lat.p99_ms:8.1f} {lat.max_ms:8.1f} {s.errors:7d} {batch:>6}"
        )
    if len(report.runs) == 3:
        sync, async_, batched = (run.summary.requests_per_s for run in report.runs)
        lines += [
            "",
            f"ratios       async/sync {_ratio(async_, sync)}   batched/sync {_ratio(batched, sync)}"
            f"   batched/async {_ratio(batched, async_)}",
        ]
        p99 = [run.summary.latency.p99_ms for run in report.runs]
        lines.append(f"p99 latency  sync/batched {_ratio(p99[0], p99[2])}   async/batched {_ratio(p99[1], p99[2])}")
    shares = [f"{run.design[:3]} {run.client_cpu_share:.2f}" for run in report.runs if run.client_cpu_share is not None]
    if shares:
        lines.append(f"client cpu   cores the load generator used: {'   '.join(shares)}")
    lines += limit_lines(report)
    lines += [f"note         {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def format_report(report: BenchmarkReport) -> str:
    """Return the stdout table for any report."""
    return format_comparison(report) if report.options.compare else format_run(report)
