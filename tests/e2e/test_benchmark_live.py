"""`manage.py benchmark` for real: short runs against a live server, and one that starts and stops its own."""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import ROOT
from vectors.loadtest import server as server_module
from vectors.loadtest.options import BenchmarkOptions, validate
from vectors.loadtest.runner import run_benchmark
from vectors.models import BenchmarkRun

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def test_a_short_closed_loop_run_measures_the_live_server_and_stores_it(embed_server, tmp_path):
    opts = validate(
        BenchmarkOptions(
            url=embed_server.url,
            endpoint="openai-base64",
            concurrency=8,
            duration_s=2.0,
            warmup_s=0.5,
            inputs_per_request=2,
            json_path=tmp_path / "run.json",
            plot_path=tmp_path / "run.png",
            label="e2e",
        )
    )
    report = run_benchmark(opts, ROOT / "manage.py")
    summary = report.runs[0].summary
    assert summary.ok > 0 and summary.errors == 0, summary.statuses
    assert summary.texts_per_s == pytest.approx(2 * summary.requests_per_s)
    assert 0 < summary.latency.p50_ms <= summary.latency.p99_ms <= summary.latency.max_ms
    assert summary.server_queue_ms is not None and summary.server_inference_ms > 0
    assert report.runs[0].mean_batch_size >= 2
    row = BenchmarkRun.objects.get(pk=report.stored_ids[0])
    assert (row.endpoint, row.mode, row.concurrency, row.label) == ("openai-base64", "closed", 8, "e2e")
    assert row.machine["cores"] >= 1 and row.results["summary"]["ok"] == summary.ok
    assert json.loads((tmp_path / "run.json").read_text())["runs"][0]["summary"]["ok"] == summary.ok
    assert (tmp_path / "run.png").stat().st_size > 10_000


def test_an_open_loop_run_sends_at_its_rate_whatever_the_server_does(embed_server):
    opts = validate(
        BenchmarkOptions(url=embed_server.url, endpoint="tei", rate=25.0, duration_s=2.0, warmup_s=0.2, store=False)
    )
    summary = run_benchmark(opts, ROOT / "manage.py").runs[0].summary
    assert summary.requests == 50
    assert summary.statuses["2xx"] == 50


def test_benchmark_without_url_starts_a_server_compares_the_designs_and_leaves_no_process_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBED_LOG_REQUESTS", "0")  # the started server must not write into the developer's log
    monkeypatch.setenv("EMBED_DATA_DIR", str(tmp_path))  # nor use the developer's data directory (var/) at all
    started: list[int] = []
    original_start = server_module.LocalServer.start

    def start(self):
        url = original_start(self)
        started.append(self.process.pid)
        return url

    monkeypatch.setattr(server_module.LocalServer, "start", start)
    children_before = set(_children(os.getpid()))
    out = StringIO()
    call_command(
        "benchmark",
        "--compare",
        "--concurrency=4",
        "--duration=1.5",
        "--warmup=0.3",
        "--limit",
        "--limit-batch-sizes=16",
        "--limit-seconds=0.3",
        "--no-store",
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    Path(os.environ.get("BENCHMARK_E2E_OUT", "/dev/null")).write_text(text)
    for row in ("(a) sync view", "(b) async view", "(c) micro-batched /get_vector", "async/sync", "served/limit"):
        assert row in text, text
    assert len(started) == 1
    assert not Path(f"/proc/{started[0]}").exists() or _zombie(started[0])
    assert not [pid for pid in set(_children(os.getpid())) - children_before if not _zombie(pid)]


def _children(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_against_a_server_that_requires_keys_the_benchmark_sends_its_api_key_and_never_stores_it(tmp_path):
    import subprocess
    import sys

    from tests.conftest import start_server, stop_server
    from vectors.loadtest.server import TargetError

    server = start_server(tmp_path, {"EMBED_REQUIRE_API_KEY": "1", "EMBED_LOG_REQUESTS": "0"})
    try:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"EMBED_DATA_DIR": str(tmp_path)}
        created = subprocess.run(
            [sys.executable, "manage.py", "apikey", "create", "load-test"],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        key = created.stdout.strip().splitlines()[-1]

        def run(endpoint: str, api_key: str | None):
            opts = BenchmarkOptions(
                url=server.url, endpoint=endpoint, concurrency=4, requests=12, warmup_s=0, api_key=api_key
            )
            return run_benchmark(validate(opts), ROOT / "manage.py")

        with pytest.raises(TargetError, match="requires an API key .*pass one with --api-key"):
            run("openai-float", None)
        with pytest.raises(TargetError, match="refuses the key given with --api-key"):
            run("openai-float", "not-a-key")
        for endpoint in ("openai-float", "ws"):  # the header on each request, and on each socket's handshake
            report = run(endpoint, key)
            assert report.runs[0].summary.statuses["2xx"] == 12, (endpoint, report.runs[0].summary.statuses)
        stored = BenchmarkRun.objects.get(pk=report.stored_ids[0])
        assert stored.parameters["api_key"] == "(given)"
        assert key not in json.dumps([stored.parameters, stored.results])
    finally:
        assert stop_server(server) == 0
