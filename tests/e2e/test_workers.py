"""`serve --workers 2`: two processes answer on one port; /metrics adds them up; a killed worker is replaced
while the other answers; SIGTERM stops them all, the replacement included.

One supervisor for the whole lifecycle: each start of it is three processes importing torch."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.conftest import start_server, stop_server, wait_until

pytestmark = pytest.mark.e2e


def pids_answering(url: str, deadline: float) -> set[int]:
    """The worker pids that answer `/info` on new connections, until two have or the deadline passes."""
    pids: set[int] = set()
    while len(pids) < 2 and time.monotonic() < deadline:
        with httpx.Client(base_url=url, timeout=60) as client:  # a new connection each time
            answer = client.get("/info")
            if answer.status_code == 200:
                pids.add(answer.json()["pid"])
        time.sleep(0.05)
    return pids


def test_two_workers_share_one_port_a_killed_one_is_replaced_and_sigterm_stops_them_all(tmp_path):
    server = start_server(tmp_path, args=("--workers", "2"))
    try:
        # Both answer on the one port, and /metrics adds up their counters.
        pids = set()
        for i in range(40):
            with httpx.Client(base_url=server.url, timeout=60) as client:
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

        # One is killed: the survivor takes every new connection, and the supervisor starts a new one.
        victim = httpx.get(f"{server.url}/info", timeout=60).json()["pid"]
        os.kill(victim, signal.SIGKILL)
        for i in range(10):
            with httpx.Client(base_url=server.url, timeout=60) as client:
                assert client.get("/get_vector", params={"sentence": f"after the kill {i}"}).status_code == 200
        deadline = time.monotonic() + 120
        wait_until(lambda: "starting a new one" in server.log(), 120)
        assert f"exited with code -{signal.SIGKILL}; starting a new one" in server.log()
        now = pids_answering(server.url, deadline)
        assert len(now) == 2 and victim not in now, now  # the survivor and the new worker
    finally:
        code = stop_server(server)
    # SIGTERM to the supervisor stops both, the replacement too, and it exits 0 once they have.
    assert code == 0, server.log()
    assert "stopped" in server.log()
    assert not [pid for pid in now if os.path.exists(f"/proc/{pid}")], server.log()  # reaped by the supervisor
