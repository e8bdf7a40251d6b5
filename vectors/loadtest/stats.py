"""Statistics of a run: an HDR latency histogram, status counts, the server's split, throughput over time."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from hdrh.histogram import HdrHistogram

from .client import CONNECT_ERROR, TIMEOUT
from .schedule import Sample, Window

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes; slower answers are recorded as 10 minutes
SIGNIFICANT_DIGITS = 3  # values are exact to 0.1%
BIN_DIGITS = 2  # per-second histograms only feed the plot
MAX_TIMELINE_BINS = 24 * 3600
STATUS_CLASSES = ("2xx", "429", "503", "other", CONNECT_ERROR, TIMEOUT)
# Percentiles the plot draws: 0, 90, 99, ... up to 99.999 in even steps of log10(1 / (1 - p)).
PLOT_PERCENTILES = tuple(100 * (1 - 10 ** (-step / 20)) for step in range(0, 101))


def new_histogram(digits: int = SIGNIFICANT_DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def record(histogram: HdrHistogram, seconds: float) -> None:
    histogram.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6))))


def status_class(status: int | None, error: str | None) -> str:
    """Return the report's bucket for an answer: 2xx, 429, 503, other, connect_error or timeout."""
    if status is None:
        return error or CONNECT_ERROR
    if 200 <= status < 300:
        return "2xx"
    if status in (429, 503):
        return str(status)
    return "other"


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in ms (HDR, within 0.1%) and the exact maximum."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @classmethod
    def of(cls, histogram: HdrHistogram, max_s: float) -> Latency:
        """Return the figures of `histogram` (in µs); `max_s` is the exact maximum, which caps them."""
        if histogram.get_total_count() == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ms = percentiles_ms(histogram, (50, 90, 99, 99.9), max_s)
        return cls(
            count=histogram.get_total_count(),
            mean_ms=histogram.get_mean_value() / 1000,
            p50_ms=ms[50],
            p90_ms=ms[90],
            p99_ms=ms[99],
            p999_ms=ms[99.9],
            max_ms=max_s * 1000,
        )


def percentiles_ms(histogram: HdrHistogram, percentiles: tuple[float, ...], max_s: float) -> dict[float, float]:
    """Return {percentile: ms} in one pass over the histogram, none above the exact maximum."""
    values = histogram.get_percentile_to_value_dict(list(percentiles))
    return {p: min(values.get(p, 0) / 1000, max_s * 1000) for p in percentiles}


@dataclass(frozen=True)
class TimeBin:
    """One second of the measured window, by completion time."""

    second: int
    ok: int
    failed: int
    texts: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Summary:
    """Everything one load run measured."""

    elapsed_s: float
    requests: int
    ok: int
    ok_texts: int
    requests_per_s: float
    texts_per_s: float
    latency: Latency
    statuses: dict[str, int]
    codes: dict[str, int]
    server_queue_ms: float | None
    server_inference_ms: float | None
    server_batch_size: float | None  # mean x-batch-size seen per request (weighted by requests)
    percentiles: list[tuple[float, float]] = field(default_factory=list)  # (percentile, ms) for the plot
    timeline: list[TimeBin] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.requests - self.statuses.get("2xx", 0)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["errors"] = self.errors
        return data


class _Bin:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.texts = 0
        self.histogram = new_histogram(BIN_DIGITS)


class Recorder:
    """Collects samples of one run and sums them up.

    Latency and status counts cover the requests *due* inside the measured window (all of
    them, however late they finish). Throughput counts 2xx answers *completed* inside the
    window, as wrk does; with a request budget instead of a duration the window ends with
    the last measured answer.
    """

    bin_s = 1.0

    def __init__(self, window: Window) -> None:
        self.window = window
        self.histogram = new_histogram()
        self.max_s = 0.0
        self.requests = 0
        self.statuses = dict.fromkeys(STATUS_CLASSES, 0)
        self.codes: dict[str, int] = {}
        self._split = [0, 0.0, 0.0, 0.0]  # count, queue ms, inference ms, batch size
        self._window_ok = 0
        self._window_texts = 0
        self.last_done_s = window.measure_from
        self._bins: dict[int, _Bin] = {}

    def measured(self, sample: Sample) -> bool:
        until = self.window.measure_until
        return sample.scheduled_s >= self.window.measure_from and (until is None or sample.scheduled_s < until)

    def add(self, sample: Sample) -> None:
        """Take one finished request into account."""
        reply = sample.reply
        ok = reply.status is not None and 200 <= reply.status < 300
        if self.measured(sample):
            self.requests += 1
            record(self.histogram, sample.latency_s)
            self.max_s = max(self.max_s, sample.latency_s)
            self.statuses[status_class(reply.status, reply.error)] += 1
            key = str(reply.status) if reply.status is not None else str(reply.error)
            self.codes[key] = self.codes.get(key, 0) + 1
            if ok and reply.queue_ms is not None and reply.inference_ms is not None:
                self._split[0] += 1
                self._split[1] += reply.queue_ms
                self._split[2] += reply.inference_ms
                self._split[3] += reply.batch_size or 0
            self.last_done_s = max(self.last_done_s, sample.done_s)
            if self.window.requests is not None:
                self._bin(sample, ok)
                if ok:
                    self._window_ok += 1
                    self._window_texts += sample.texts
        if self.window.requests is None and self._completed_in_window(sample):
            self._bin(sample, ok)
            if ok:
                self._window_ok += 1
                self._window_texts += sample.texts

    def _completed_in_window(self, sample: Sample) -> bool:
        until = self.window.measure_until
        return until is not None and self.window.measure_from <= sample.done_s <= until

    def _bin(self, sample: Sample, ok: bool) -> None:
        index = max(0, math.floor((sample.done_s - self.window.measure_from) / self.bin_s))
        time_bin = self._bins.get(index)
        if time_bin is None:
            time_bin = self._bins[index] = _Bin()
        if ok:
            time_bin.ok += 1
            time_bin.texts += sample.texts
            record(time_bin.histogram, sample.latency_s)
        else:
            time_bin.failed += 1

    @property
    def ok_so_far(self) -> int:
        return self._window_ok

    def elapsed_s(self) -> float:
        if self.window.duration_s is not None:
            return self.window.duration_s
        return max(self.last_done_s - self.window.measure_from, 1e-9)

    def summary(self) -> Summary:
        """Return the run's figures."""
        elapsed = self.elapsed_s()
        split_count = self._split[0]
        latency = Latency.of(self.histogram, self.max_s)
        percentiles = []
        if latency.count:
            percentiles = list(percentiles_ms(self.histogram, PLOT_PERCENTILES, self.max_s).items())
        return Summary(
            elapsed_s=elapsed,
            requests=self.requests,
            ok=self.statuses["2xx"],
            ok_texts=self._window_texts,
            requests_per_s=self._window_ok / elapsed,
            texts_per_s=self._window_texts / elapsed,
            latency=latency,
            statuses=dict(self.statuses),
            codes=dict(sorted(self.codes.items())),
            server_queue_ms=self._split[1] / split_count if split_count else None,
            server_inference_ms=self._split[2] / split_count if split_count else None,
            server_batch_size=self._split[3] / split_count if split_count else None,
            percentiles=percentiles,
            timeline=self._timeline(elapsed),
        )

    def _timeline(self, elapsed_s: float) -> list[TimeBin]:
        """Every second of the window, the ones without any answer included (as zeros)."""
        seconds = max([min(math.ceil(elapsed_s / self.bin_s), MAX_TIMELINE_BINS), *(i + 1 for i in self._bins)])
        empty = TimeBin(0, 0, 0, 0, 0.0, 0.0)
        return [
            self._time_bin(index, self._bins[index]) if index in self._bins else replace(empty, second=index)
            for index in range(seconds)
        ]

    def _time_bin(self, index: int, time_bin: _Bin) -> TimeBin:
        ms = percentiles_ms(time_bin.histogram, (50, 99), math.inf) if time_bin.ok else {50: 0.0, 99: 0.0}
        return TimeBin(index, time_bin.ok, time_bin.failed, time_bin.texts, ms[50], ms[99])
