"""`serve --workers 2`: two processes answer on one port; SIGTERM stops both; /metrics adds them up."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.e2e


def test_two_workers_share_one_port_and_stop_together(tmp_path, reference):
    server = start_server(tmp_path, args=("--workers", "2"))
    try:
        pids = set()
        for i in range(40):
            with httpx.Client(base_url=server.url, timeout=60) as client:  # a new connection each time
                pids.add(client.get("/info").json()["pid"])
                vector = client.get("/get_vector", params={"sentence": f"worker test {i}"}).json()["vector"]
                assert len(vector) == 384
            if len(pids) == 2:
                break
        assert len(pids) == 2, f"only {pids} answered"
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        calls = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("embed_requests_total{") and 'endpoint="get_vector"' in line
        )
        assert calls >= i + 1  # every worker's requests, whichever worker answered the scrape
    finally:
        code = stop_server(server)
    assert code == 0, server.log()
    assert "stopped" in server.log()


def test_a_killed_worker_is_replaced_while_the_other_keeps_answering(tmp_path):
    import os
    import signal
    import time

    server = start_server(tmp_path, args=("--workers", "2"))
    try:
        victim = httpx.get(f"{server.url}/info", timeout=60).json()["pid"]
        os.kill(victim, signal.SIGKILL)
        for i in range(10):  # new connections: the survivor takes them all
            with httpx.Client(base_url=server.url, timeout=60) as client:
                assert client.get("/get_vector", params={"sentence": f"after the kill {i}"}).status_code == 200
        deadline = time.monotonic() + 120
        while "starting a new one" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"exited with code -{signal.SIGKILL}; starting a new one" in server.log()
        pids = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                answer = client.get("/info")
                if answer.status_code == 200:
                    pids.add(answer.json()["pid"])
            time.sleep(0.05)
        assert len(pids) == 2 and victim not in pids, pids  # the survivor and the new worker
    finally:
        code = stop_server(server)
    assert code == 0, server.log()
