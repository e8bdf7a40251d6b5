"""The run as a PNG: latency by percentile (HDR style) and throughput over time, one line per design."""

from __future__ import annotations

import math
from pathlib import Path

from .result import BenchmarkReport

PERCENTILE_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)


def _x(percentile: float) -> float:
    """Position of a percentile on the plot: log10(1 / (1 - p)), so 90, 99, 99.9 are evenly spaced."""
    return math.log10(1 / max(1e-6, 1 - percentile / 100))


def write_plot(report: BenchmarkReport, path: Path) -> None:
    """Write the two panels to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, (latency_ax, rate_ax) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for run in report.runs:
        summary = run.summary
        label = run.design if report.options.compare else run.endpoint
        if summary.percentiles:
            xs = [_x(p) for p, _ in summary.percentiles]
            latency_ax.plot(xs, [ms for _, ms in summary.percentiles], label=label)
        seconds = [time_bin.second for time_bin in summary.timeline]
        rate_ax.plot(seconds, [time_bin.ok for time_bin in summary.timeline], marker=".", label=label)
    latency_ax.set_xticks([_x(t) for t in PERCENTILE_TICKS], [f"{t:g}%" for t in PERCENTILE_TICKS])
    latency_ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    latency_ax.yaxis.set_major_formatter(plain)
    latency_ax.yaxis.set_minor_formatter(plain)
    latency_ax.set_xlabel("percentile")
    latency_ax.set_ylabel("latency (ms, log scale)")
    latency_ax.set_title("Latency distribution")
    latency_ax.grid(True, which="both", alpha=0.3)
    rate_ax.set_xlabel("second of the measured window")
    rate_ax.set_ylabel("2xx answers per second")
    rate_ax.set_title("Throughput over time")
    rate_ax.set_ylim(bottom=0)
    rate_ax.grid(True, alpha=0.3)
    for ax in (latency_ax, rate_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    machine = report.machine
    opts = report.options
    load = f"open loop {opts.rate:g} req/s" if opts.rate is not None else f"{opts.concurrency} clients"
    figure.suptitle(
        f"embedservice {report.model} - {machine.get('cpu', '')}, {machine.get('usable_cores')} cores - {load}"
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
