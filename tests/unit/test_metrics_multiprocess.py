"""/metrics with several worker processes: PROMETHEUS_MULTIPROC_DIR adds every worker's figures up."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import generate_latest

from vectors import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = """
from vectors import metrics
metrics.LOG_DROPPED.labels("buffer_full").inc({dropped})
metrics.LOG_WRITTEN.inc(100)
metrics.LOG_BUFFER.set({buffered})
metrics.REQUESTS.labels("openai", "m", "200").inc(3)
"""


def test_every_workers_counters_are_added_up(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for dropped, buffered in ((2, 5), (3, 7)):
        code = WORKER.format(dropped=dropped, buffered=buffered)
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    totals = metrics.recorder_totals(str(tmp_path))
    assert totals["dropped"] == 5 and totals["dropped_buffer_full"] == 5 and totals["written"] == 200
    exposed = generate_latest(metrics.registry(str(tmp_path))).decode()
    assert 'embed_requests_total{endpoint="openai",model="m",status="200"} 6.0' in exposed
    assert "embed_log_buffer_rows 12.0" in exposed, "live workers' buffers add up"


def test_one_process_exposes_its_own_registry():
    from prometheus_client import REGISTRY

    assert metrics.registry("") is REGISTRY
