"""Statistics of a run: HDR percentiles against known distributions, status classes, windows, server split."""

from __future__ import annotations

import numpy as np
import pytest

from vectors.loadtest.client import CONNECT_ERROR, TIMEOUT, Reply
from vectors.loadtest.schedule import Sample, Window
from vectors.loadtest.stats import Recorder, status_class


def sample(latency_s, scheduled_s=0.0, status=200, texts=1, **reply):
    return Sample(scheduled_s, scheduled_s, scheduled_s + latency_s, texts, Reply(status, **reply))


def recorder_with(latencies_s, duration_s=100.0):
    recorder = Recorder(Window(0.0, 0.0, duration_s=duration_s))
    for latency in latencies_s:
        recorder.add(sample(latency))
    return recorder


def test_percentiles_of_a_uniform_distribution_are_exact_to_a_tenth_of_a_percent():
    latency = recorder_with([ms / 1000 for ms in range(1, 10_001)]).summary().latency
    assert latency.count == 10_000
    got = (latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.p999_ms)
    assert got == pytest.approx((5000, 9000, 9900, 9990), rel=1e-3)
    assert latency.max_ms == pytest.approx(10_000)
    assert latency.mean_ms == pytest.approx(5000.5, rel=1e-3)


def test_percentiles_of_an_exponential_sample_agree_with_numpy():
    rng = np.random.default_rng(7)
    values = rng.exponential(0.050, 30_000) + 0.001
    latency = recorder_with(values).summary().latency
    for got, q in [(latency.p50_ms, 50), (latency.p90_ms, 90), (latency.p99_ms, 99), (latency.p999_ms, 99.9)]:
        assert got == pytest.approx(np.percentile(values, q) * 1000, rel=5e-3)
    assert latency.max_ms == pytest.approx(values.max() * 1000)


def test_a_one_percent_slow_tail_shows_at_p999_but_not_at_p99():
    latency = recorder_with([0.010] * 9_900 + [1.0] * 100).summary().latency
    assert latency.p50_ms == pytest.approx(10, rel=1e-3)
    assert latency.p99_ms == pytest.approx(10, rel=1e-3)
    assert latency.p999_ms == pytest.approx(1000, rel=1e-3)
    assert latency.max_ms == pytest.approx(1000)


def test_an_empty_run_reports_zeros_instead_of_failing():
    summary = Recorder(Window(0.0, 0.0, duration_s=1.0)).summary()
    assert summary.latency.count == 0
    assert summary.requests_per_s == 0
    assert summary.percentiles == []


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, None, "2xx"),
        (204, None, "2xx"),
        (429, None, "429"),
        (503, None, "503"),
        (500, None, "other"),
        (404, None, "other"),
        (None, CONNECT_ERROR, CONNECT_ERROR),
        (None, TIMEOUT, TIMEOUT),
    ],
)
def test_status_class_sorts_answers_into_the_reported_buckets(status, error, expected):
    assert status_class(status, error) == expected


def test_status_counts_and_codes_cover_every_measured_request():
    recorder = Recorder(Window(0.0, 0.0, duration_s=10.0))
    for status, error in [(200, None), (200, None), (429, None), (503, None), (500, None), (None, TIMEOUT)]:
        recorder.add(Sample(1.0, 1.0, 1.1, 1, Reply(status, error)))
    summary = recorder.summary()
    assert summary.statuses == {"2xx": 2, "429": 1, "503": 1, "other": 1, CONNECT_ERROR: 0, TIMEOUT: 1}
    assert summary.codes == {"200": 2, "429": 1, "500": 1, "503": 1, "timeout": 1}
    assert summary.errors == 4
    assert summary.ok == 2


def test_latency_covers_requests_due_in_the_window_however_late_they_finish():
    recorder = Recorder(Window(0.0, warmup_s=1.0, duration_s=2.0))
    recorder.add(sample(0.2, scheduled_s=0.5))  # warm-up: not measured
    recorder.add(sample(5.0, scheduled_s=1.5))  # due in the window, answered long after it
    recorder.add(sample(0.1, scheduled_s=3.2))  # due after the window
    summary = recorder.summary()
    assert summary.requests == 1
    assert summary.latency.max_ms == pytest.approx(5000)


def test_throughput_counts_2xx_answers_completed_inside_the_window_like_wrk():
    recorder = Recorder(Window(0.0, warmup_s=1.0, duration_s=2.0))
    recorder.add(sample(0.6, scheduled_s=0.8))  # sent in warm-up, completes at 1.4: counts
    recorder.add(sample(0.1, scheduled_s=1.0, texts=4))  # completes 1.1: counts
    recorder.add(sample(0.1, scheduled_s=1.5, status=503))  # not 2xx
    recorder.add(sample(2.0, scheduled_s=2.5))  # completes 4.5, after the window
    recorder.add(sample(0.1, scheduled_s=0.1))  # warm-up, completes in warm-up
    summary = recorder.summary()
    assert summary.elapsed_s == 2.0
    assert summary.requests_per_s == pytest.approx(2 / 2.0)
    assert summary.texts_per_s == pytest.approx(5 / 2.0)


def test_a_request_budget_measures_until_the_last_answer():
    recorder = Recorder(Window(10.0, warmup_s=0.0, requests=3))
    for due in (10.0, 10.5, 11.0):
        recorder.add(sample(1.0, scheduled_s=due))
    summary = recorder.summary()
    assert summary.elapsed_s == pytest.approx(2.0)
    assert summary.requests_per_s == pytest.approx(1.5)


def test_server_split_is_the_mean_of_the_timing_headers_of_2xx_answers():
    recorder = Recorder(Window(0.0, 0.0, duration_s=10.0))
    recorder.add(sample(0.1, scheduled_s=1, queue_ms=10.0, inference_ms=30.0, batch_size=8))
    recorder.add(sample(0.1, scheduled_s=1, queue_ms=20.0, inference_ms=50.0, batch_size=16))
    recorder.add(sample(0.1, scheduled_s=1, status=503, queue_ms=900.0, inference_ms=0.0))
    summary = recorder.summary()
    assert summary.server_queue_ms == pytest.approx(15.0)
    assert summary.server_inference_ms == pytest.approx(40.0)
    assert summary.server_batch_size == pytest.approx(12.0)


def test_without_timing_headers_the_server_split_is_unknown():
    summary = recorder_with([0.1, 0.2]).summary()
    assert summary.server_queue_ms is None
    assert summary.server_inference_ms is None


def test_timeline_bins_answers_by_the_second_they_completed_in():
    recorder = Recorder(Window(0.0, warmup_s=1.0, duration_s=3.0))
    for done in (1.1, 1.2, 1.9, 2.5, 3.99):
        recorder.add(Sample(done - 0.05, done - 0.05, done, 1, Reply(200)))
    recorder.add(Sample(2.0, 2.0, 2.1, 1, Reply(503)))
    timeline = recorder.summary().timeline
    assert [(b.second, b.ok, b.failed) for b in timeline] == [(0, 3, 0), (1, 1, 1), (2, 1, 0)]
    assert timeline[0].p99_ms == pytest.approx(50, rel=0.01)


def test_timeline_shows_seconds_without_answers_as_zeros():
    recorder = Recorder(Window(0.0, 0.0, duration_s=4.0))
    recorder.add(Sample(0.1, 0.1, 0.2, 1, Reply(200)))
    recorder.add(Sample(2.1, 2.1, 2.5, 1, Reply(200)))
    assert [b.ok for b in recorder.summary().timeline] == [1, 0, 1, 0]


def test_plot_percentiles_rise_monotonically_up_to_the_maximum():
    summary = recorder_with(np.linspace(0.001, 1.0, 5000)).summary()
    values = [ms for _, ms in summary.percentiles]
    assert values == sorted(values)
    assert values[-1] <= summary.latency.max_ms
