"""The endpoints a benchmark can load, each a small object that opens a Session; add one with `register`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from .client import BuildCall, HttpCall, HttpSession, OpenSession, Session
from .websocket import ws


@dataclass(frozen=True)
class Endpoint:
    """How to reach one endpoint.

    `open(base_url, connections, timeout_s, headers=None)` returns a Session holding up to `connections`
    connections that send `headers` (the API key) with each request, or each socket's handshake; a
    WebSocket endpoint supplies its own `open` that returns a session over WebSocket frames.
    """

    name: str
    description: str
    open: OpenSession
    max_inputs: int | None = None  # None: as many as the server allows
    needs_bench_views: bool = False


ENDPOINTS: dict[str, Endpoint] = {}


def register(endpoint: Endpoint) -> Endpoint:
    """Make `endpoint` selectable with `--endpoint NAME`."""
    ENDPOINTS[endpoint.name] = endpoint
    return endpoint


def get(name: str) -> Endpoint:
    """Return the endpoint called `name`.

    Raises:
        KeyError: no endpoint has that name.
    """
    return ENDPOINTS[name]


def http(build: BuildCall) -> OpenSession:
    def open_session(
        base_url: str, connections: int, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> Session:
        return HttpSession(base_url, connections, timeout_s, build, headers=headers)

    return open_session


def _one_or_list(texts: Sequence[str]) -> str | list[str]:
    return texts[0] if len(texts) == 1 else list(texts)


def openai_call(encoding_format: str) -> BuildCall:
    def build(texts: Sequence[str]) -> HttpCall:
        body = {"input": _one_or_list(texts), "encoding_format": encoding_format}
        return HttpCall("POST", "/v1/embeddings", body=orjson.dumps(body))

    return build


def tei_call(texts: Sequence[str]) -> HttpCall:
    return HttpCall("POST", "/embed", body=orjson.dumps({"inputs": _one_or_list(texts)}))


def get_vector_call(path: str) -> BuildCall:
    def build(texts: Sequence[str]) -> HttpCall:
        return HttpCall("GET", path, params={"sentence": texts[0]})

    return build


register(Endpoint("openai-float", "POST /v1/embeddings, encoding_format=float", http(openai_call("float"))))
register(Endpoint("openai-base64", "POST /v1/embeddings, encoding_format=base64", http(openai_call("base64"))))
register(Endpoint("tei", "POST /embed (TEI)", http(tei_call)))
register(Endpoint("get_vector", "GET /get_vector?sentence= (micro-batched)", http(get_vector_call("/get_vector")), 1))
register(
    Endpoint(
        "bench-sync",
        "GET /bench/get_vector_sync: sync view, model.encode per request (baseline)",
        http(get_vector_call("/bench/get_vector_sync")),
        1,
        needs_bench_views=True,
    )
)
register(
    Endpoint(
        "bench-async",
        "GET /bench/get_vector_async: await sync_to_async(model.encode) per request (baseline)",
        http(get_vector_call("/bench/get_vector_async")),
        1,
        needs_bench_views=True,
    )
)
register(Endpoint("ws", "ws/embed/ frames, one socket per client (1 in flight each)", ws(1)))
register(Endpoint("ws-8", "ws/embed/ frames, one socket per 8 clients (8 in flight each)", ws(8)))
