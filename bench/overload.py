"""Overload check: N connections against a deliberately small queue bound; only 200 and 429 may come back.

Usage: .venv/bin/python bench/overload.py [--connections 1000] [--duration 60] [--queue 64]
Starts `manage.py serve` itself on a free loopback port, samples the server's thread count during the
load, checks that rejections stop within seconds once the load stops, and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import start_server, stop_server  # noqa: E402


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


async def overload(url: str, pid: int, connections: int, duration_s: float) -> dict:
    statuses: collections.Counter = collections.Counter()
    missing_retry_after = 0
    thread_samples: list[int] = []
    stop = time.monotonic() + duration_s

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal missing_retry_after
        n = 0
        while time.monotonic() < stop:
            n += 1
            try:
                r = await http.get("/get_vector", params={"sentence": f"client {i} sentence {n}"})
                statuses[r.status_code] += 1
                if r.status_code == 429 and "retry-after" not in r.headers:
                    missing_retry_after += 1
                if r.status_code == 429:
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")) * 0.1)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

    async def sample() -> None:
        while time.monotonic() < stop:
            thread_samples.append(threads_of(pid))
            await asyncio.sleep(1)

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        await asyncio.gather(sample(), *(client(i, http) for i in range(connections)))
        ended = time.monotonic()
        recovered_after = None
        while time.monotonic() - ended < 30:
            r = await http.get("/get_vector", params={"sentence": "after the storm"})
            if r.status_code == 200:
                recovered_after = time.monotonic() - ended
                break
            await asyncio.sleep(0.1)
    return {
        "statuses": dict(statuses),
        "missing_retry_after": missing_retry_after,
        "threads_max": max(thread_samples),
        "threads_min": min(thread_samples),
        "recovered_after_s": recovered_after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--queue", type=int, default=64, help="EMBED_MAX_QUEUE_INPUTS for the server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), {"EMBED_MAX_QUEUE_INPUTS": str(args.queue), "HF_HUB_OFFLINE": "1"})
        try:
            result = asyncio.run(overload(server.url, server.process.pid, args.connections, args.duration))
        finally:
            code = stop_server(server)
    print(result, f"exit={code}")
    ok = (
        set(result["statuses"]) <= {200, 429}
        and result["missing_retry_after"] == 0
        and result["recovered_after_s"] is not None
        and result["recovered_after_s"] < 5
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
