"""End to end: the plain-JDK Java examples in clients/java/ against a real server, checked against the Python model."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, cosines

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("java") is None,
        reason="no `java` on PATH: the Java examples need a JDK 17+ (.ci/run installs default-jdk-headless)",
    ),
]

CLIENTS = ROOT / "clients" / "java"
# Non-ASCII, quotes, backslashes and tabs: what the examples' hand-written JSON must get right.
TEXTS = [
    "The Java system asks for a vector.",
    "今天天气很好，我们去公园散步吧。",
    'A "quoted" word, a back\\slash and a\ttab.',
    "Ünïcödé façade — naïve café",
]


def run_java(source: str, *args: str, texts: list[str] = TEXTS) -> np.ndarray:
    """Run `java clients/java/<source> ARGS` with the texts on stdin; return its vectors, one per line."""
    env = {k: v for k, v in os.environ.items() if k != "EMBED_API_KEY"}
    done = subprocess.run(
        ["java", str(CLIENTS / source), *args],
        input="\n".join(texts) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, f"{source} exited {done.returncode}:\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    return np.array([[float(x) for x in line.split(",")] for line in lines])


@pytest.fixture(scope="module")
def expected(reference) -> np.ndarray:
    return reference.encode(TEXTS)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_client_decodes_float_and_base64_to_the_python_models_vectors(embed_server, expected, encoding):
    got = run_java("EmbeddingsClient.java", "--url", embed_server.url, "--encoding", encoding)
    assert got.shape == (len(TEXTS), 384)
    assert cosines(got, expected).min() >= 0.9999


def test_get_vector_client_gets_the_python_models_vectors(embed_server, expected):
    got = run_java("GetVectorClient.java", "--url", embed_server.url)
    assert got.shape == (len(TEXTS), 384)
    assert cosines(got, expected).min() >= 0.9999


def test_streaming_client_gets_the_python_models_vectors_in_input_order(embed_server, reference):
    texts = [f"{text} (frame {i})" for i in range(3) for text in TEXTS]
    ws_url = embed_server.url.replace("http://", "ws://", 1) + "/ws/embed/"
    got = run_java("StreamingClient.java", "--url", ws_url, "--in-flight", "4", "--encoding", "base64", texts=texts)
    assert got.shape == (len(texts), 384)
    assert cosines(got, reference.encode(texts)).min() >= 0.9999


def test_every_example_is_a_single_file_plain_jdk_program():
    for source in ("EmbeddingsClient.java", "GetVectorClient.java", "StreamingClient.java"):
        text = Path(CLIENTS / source).read_text()
        imports = [line.split()[1] for line in text.splitlines() if line.startswith("import ")]
        assert imports and all(name.startswith("java.") for name in imports), f"{source} imports beyond the JDK"


def test_streaming_client_exits_1_when_the_server_closes_the_socket_while_it_waits_for_room(embed_server):
    from vectors import conf

    # A frame past what the server reads closes the socket (1009); with 2 in flight the client is then
    # waiting for room to send its third text, which no answer will ever give it.
    too_long = "x" * (conf.limits().max_body_bytes + 200 * 1024)
    ws_url = embed_server.url.replace("http://", "ws://", 1) + "/ws/embed/"
    done = subprocess.run(
        ["java", str(CLIENTS / "StreamingClient.java"), "--url", ws_url, "--in-flight", "2"],
        input="\n".join([too_long, *TEXTS]) + "\n",
        capture_output=True, text=True, encoding="utf-8", timeout=120,
        env={k: v for k, v in os.environ.items() if k != "EMBED_API_KEY"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "socket closed by the server" in done.stderr or "socket error" in done.stderr, done.stderr[-2000:]
    assert done.stdout == ""
