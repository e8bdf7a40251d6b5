"""What a run prints and writes: the stdout tables, the JSON, the plot and the progress line."""

from __future__ import annotations

import json

import orjson
import pytest

from vectors.loadtest.batches import BatchDelta
from vectors.loadtest.client import Reply
from vectors.loadtest.limit import LimitResult
from vectors.loadtest.load import LoadResult
from vectors.loadtest.options import BenchmarkOptions, validate
from vectors.loadtest.plot import write_plot
from vectors.loadtest.progress import render
from vectors.loadtest.report import format_report
from vectors.loadtest.result import BenchmarkReport
from vectors.loadtest.schedule import Sample, Window
from vectors.loadtest.stats import Recorder

MACHINE = {"cpu": "AMD EPYC", "cores": 2, "usable_cores": 2, "ram_gib": 23.5, "torch": "2.13.0", "torch_threads": 2}


def load_result(design, endpoint, rate_per_s, latency_s, batch=None):
    recorder = Recorder(Window(0.0, 0.0, duration_s=10.0))
    for i in range(int(rate_per_s * 10)):  # answers complete evenly inside the 10 s window
        done = (i + 0.5) / rate_per_s
        due = done - latency_s
        recorder.add(Sample(due, due, done, 1, Reply(200, queue_ms=2.0, inference_ms=8.0, batch_size=4)))
    return LoadResult(design, endpoint, recorder.summary(), batch)


def report_of(opts, runs, limit=None):
    return BenchmarkReport(
        validate(opts), "http://127.0.0.1:8123", True, runs, limit, MACHINE, "abc123", "all-MiniLM-L6-v2"
    )


def test_the_run_table_shows_throughput_percentiles_statuses_split_and_served_over_limit():
    run = load_result("", "openai-float", 30, 0.05, BatchDelta(model_calls=75, texts=300))
    limit = LimitResult("all-MiniLM-L6-v2", 40.0, 128, {16: 20.0, 128: 40.0}, 2)
    text = format_report(report_of(BenchmarkOptions(concurrency=64, duration_s=10.0), [run], limit))
    assert "closed loop, 64 concurrent clients, 10 s" in text
    assert "30.0 requests/s" in text
    assert "p50 50.0" in text and "p99.9" in text and "max 50.0" in text
    assert "2xx 299" in text and "429 0" in text and "connect_error 0" in text
    assert "queue 2.0 ms" in text and "inference 8.0 ms" in text and "mean batch 4.0 texts" in text
    assert "served/limit       0.75" in text
    assert "AMD EPYC, 2 cores" in text


def test_the_comparison_table_has_a_row_per_design_and_the_ratios():
    runs = [
        load_result("(a) sync", "bench-sync", 5, 2.0),
        load_result("(b) async", "bench-async", 10, 1.0),
        load_result("(c) batched", "get_vector", 50, 0.2, BatchDelta(10, 500)),
    ]
    text = format_report(report_of(BenchmarkOptions(compare=True, concurrency=100), runs))
    lines = text.splitlines()
    assert any(line.startswith("(a) sync") and "5.0" in line for line in lines)
    assert any(line.startswith("(c) batched") and "50.0" in line and line.rstrip().endswith("50.0") for line in lines)
    assert "async/sync 2.0x" in text
    assert "batched/sync 10.0x" in text
    assert "batched/async 5.0x" in text
    assert "sync/batched 10.0x" in text


def test_the_report_serialises_to_json_with_every_figure():
    run = load_result("", "tei", 20, 0.01, BatchDelta(4, 200))
    report = report_of(BenchmarkOptions(), [run], LimitResult("m", 100.0, 64, {64: 100.0}))
    data = json.loads(orjson.dumps(report.to_dict()))
    assert data["runs"][0]["summary"]["requests_per_s"] == pytest.approx(20.0)
    assert data["runs"][0]["batches"]["mean_batch_size"] == 50.0
    assert data["runs"][0]["served_over_limit"] == pytest.approx(0.2)
    assert data["limit"]["by_batch_size"] == {"64": 100.0}
    assert data["parameters"]["concurrency"] == 64
    assert data["machine"]["cpu"] == "AMD EPYC"


def test_the_plot_is_written_as_a_png(tmp_path):
    runs = [load_result("(a) sync", "bench-sync", 5, 2.0), load_result("(c) batched", "get_vector", 50, 0.2)]
    path = tmp_path / "run.png"
    write_plot(report_of(BenchmarkOptions(compare=True), runs), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_progress_line_shows_the_bar_the_time_and_the_rate():
    line = render("openai-float", 5.0, 20.0, 500, 2, warming=False)
    assert "[######" in line and "5.0/20 s" in line and "500 ok" in line and "2 failed" in line and "100 req/s" in line
    assert "warming up" in render("tei", 1.0, 3.0, 0, 0, warming=True)
    assert "12.0 s" in render("tei", 12.0, None, 10, 0, warming=False)
    assert "waiting for the last answers" in render("tei", 20.0, 20.0, 10, 0, warming=False, finishing=True)
