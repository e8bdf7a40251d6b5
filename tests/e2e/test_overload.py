"""Overload in short form (bench/overload.py runs the long one): only 200 and 429 + Retry-After."""

from __future__ import annotations

import pytest

from bench.overload import overload
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.e2e


async def test_many_connections_against_a_small_queue_get_only_200_and_429_and_recover(tmp_path):
    server = start_server(tmp_path, {"EMBED_MAX_QUEUE_INPUTS": "16"})
    try:
        result = await overload(server.url, server.process.pid, connections=200, duration_s=6)
    finally:
        assert stop_server(server) == 0
    assert set(result["statuses"]) <= {200, 429}, result
    assert result["statuses"].get(429, 0) > 0, result  # the bound really was hit
    assert result["statuses"].get(200, 0) > 0, result
    assert result["missing_retry_after"] == 0
    assert result["recovered_after_s"] is not None and result["recovered_after_s"] < 5
    assert result["threads_max"] < 64, result  # no thread per request
