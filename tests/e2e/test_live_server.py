"""End to end: a real daphne server process on loopback, real clients, the real model."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import content_length, cosines, start_server, stop_server

pytestmark = pytest.mark.e2e


def model_stats(url: str) -> dict:
    return httpx.get(f"{url}/info", timeout=10).json()["models"][0]


async def test_200_concurrent_requests_are_batched_into_far_fewer_model_calls(embed_server, reference):
    texts = [f"concurrent sentence {i}: the service batches request number {i}" for i in range(200)]
    before = model_stats(embed_server.url)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=embed_server.url, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(*(client.get("/get_vector", params={"sentence": t}) for t in texts))
    assert [r.status_code for r in responses] == [200] * 200
    after = model_stats(embed_server.url)
    calls = after["model_calls"] - before["model_calls"]
    requests = after["stats"]["requests"] - before["stats"]["requests"]
    assert requests == 200
    assert calls <= 40, f"{calls} model calls for 200 requests: batching did not happen"
    got = np.array([r.json()["vector"] for r in responses])
    assert cosines(got, reference.encode(texts)).min() >= 0.9999
    batch_sizes = [int(r.headers["x-batch-size"]) for r in responses]
    assert max(batch_sizes) > 1


def test_official_openai_client_gets_correct_embeddings_with_default_settings(embed_server, reference):
    from openai import OpenAI

    client = OpenAI(base_url=f"{embed_server.url}/v1", api_key="unused", max_retries=0)
    texts = ["The Java system calls over HTTP.", "向量服务", "openai-python asks for base64 by default"]
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    got = np.array([item.embedding for item in result.data])
    assert got.shape == (3, 384)
    assert cosines(got, reference.encode(texts)).min() >= 0.9999
    assert result.usage.prompt_tokens > 0
    shortened = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], dimensions=128)
    assert len(shortened.data[0].embedding) == 128


def test_server_answers_json_errors_not_html(embed_server):
    missing = httpx.get(f"{embed_server.url}/nothing-here", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    bad = httpx.post(
        f"{embed_server.url}/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_json"


def test_a_get_vector_of_a_long_text_is_answered(embed_server, reference):
    # ~27 KB of request line: past Twisted's own 16 KiB, within the 64 KiB both servers now read.
    text = " ".join(f"word{i % 97}" for i in range(4000))  # 27 000 characters (the limit: 32 768)
    answer = httpx.get(f"{embed_server.url}/get_vector", params={"sentence": text}, timeout=60)
    assert answer.status_code == 200, answer.text[:200]
    assert cosines(np.array([answer.json()["vector"]]), reference.encode([text])).min() >= 0.9999


def test_admin_static_files_are_served_without_collectstatic(embed_server):
    response = httpx.get(f"{embed_server.url}/static/admin/css/base.css", timeout=10)
    assert response.status_code == 200


def test_a_post_that_offers_an_h2c_upgrade_keeps_its_body(embed_server, reference):
    """Java's HttpClient offers h2c on every plain-HTTP request; the answer must stay HTTP/1.1 with the body read."""
    offer = {
        "Connection": "Upgrade, HTTP2-Settings",
        "Upgrade": "h2c",
        "HTTP2-Settings": "AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAA",
    }
    r = httpx.post(f"{embed_server.url}/v1/embeddings", json={"input": "an upgrade offer"}, headers=offer, timeout=30)
    assert r.status_code == 200, r.text
    vector = np.asarray(r.json()["data"][0]["embedding"])
    assert cosines(vector[None, :], reference.encode(["an upgrade offer"]))[0] >= 0.9999


def test_the_listening_socket_queues_a_burst_of_connections(embed_server):
    """The backlog is --backlog's 2048 (capped by somaxconn) on both servers, not Twisted's 50.

    With 50, 1000 clients connecting at once lost SYNs and waited 1-7 s for their retries.
    """
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("needs ss (iproute2) to read the listening socket's backlog")
    port = embed_server.url.rsplit(":", 1)[1]
    listing = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    backlogs = [int(line.split()[2]) for line in listing.splitlines() if line.startswith("LISTEN")]
    assert backlogs == [min(2048, somaxconn)], listing


def test_access_log_writes_one_line_per_request(embed_server):
    """The session's servers run with --access-log: one line per answered request, errors included."""
    assert httpx.get(f"{embed_server.url}/get_vector", params={"sentence": "logged"}, timeout=30).status_code == 200
    assert httpx.get(f"{embed_server.url}/no-such-page", timeout=30).status_code == 404
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "GET /no-such-page" not in embed_server.log():
        time.sleep(0.1)
    lines = embed_server.log().splitlines()
    assert any("GET /get_vector" in line and " 200" in line for line in lines), embed_server.log()[-2000:]
    assert any("GET /no-such-page" in line and " 404" in line for line in lines), embed_server.log()[-2000:]


def test_an_h2c_offer_split_across_two_tcp_segments_keeps_its_body(embed_server, reference):
    """Over a real network the header block can arrive in pieces, the split inside `Upgrade: h2c`."""
    body = json.dumps({"input": "a split upgrade offer"}).encode()
    head = (
        "POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        "Upgrade: h2c\r\nHTTP2-Settings: AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAA\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    split = head.index(b"Upgrade: h2c") + len(b"Upgr")
    with socket.create_connection(embed_server.address, timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(2):  # twice on one keep-alive connection: the second request is cut the same way
            conn.sendall(head[:split])
            time.sleep(0.2)  # the server reads the first piece on its own
            conn.sendall(head[split:] + body)
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
                chunk = conn.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1 200"), answer[:500]
            vector = np.asarray(json.loads(answer.split(b"\r\n\r\n", 1)[1])["data"][0]["embedding"])
            assert cosines(vector[None, :], reference.encode(["a split upgrade offer"]))[0] >= 0.9999


def test_the_server_runs_on_uvloop_by_default(embed_server):
    name = "uvicorn" if "uvicorn" in embed_server.process.args else "daphne"
    assert re.search(rf"^{name} on uvloop$", embed_server.log(), re.M), embed_server.log()


@pytest.mark.parametrize("server_name", ["daphne", "uvicorn"])
def test_embed_event_loop_asyncio_serves_on_asyncio_s_own_loop(tmp_path, server_name, reference):
    server = start_server(tmp_path, env_extra={"EMBED_EVENT_LOOP": "asyncio"}, args=("--server", server_name))
    try:
        answer = httpx.get(f"{server.url}/get_vector", params={"sentence": "hello world"}, timeout=30)
        assert answer.status_code == 200
        assert cosines([answer.json()["vector"]], reference.encode(["hello world"]))[0] > 0.9999
    finally:
        assert stop_server(server) == 0
    assert f"{server_name} on asyncio" in server.log()
