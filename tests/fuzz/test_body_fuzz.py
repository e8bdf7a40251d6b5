"""Hostile bodies and query strings through both adapters: never a 5xx, the error envelope on every 4xx.

Bodies are built as Python values and then written as bytes several ways, because a lone surrogate cannot be
UTF-8 encoded: as a JSON escape ("\\ud800"), as the raw bytes of the surrogate (invalid UTF-8), as UTF-16 or with
a BOM, cut short or with garbage appended. Short form: a few dozen examples per endpoint, fixed seed.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.parse

from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Answer, AsgiClient, DrfClient

MAX_CHARS = django_settings.EMBEDDINGS["MAX_INPUT_CHARS"]
MAX_DIMENSIONS = 384  # all-MiniLM-L6-v2
FUZZ = settings(
    max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

# -- values ---------------------------------------------------------------------------------------------------------

ODD_TEXTS = [
    "",
    " ",
    "\t\n\r ",
    "\x00",
    "a\x00b",
    "\ud800",  # lone high surrogate
    "\udfff",  # lone low surrogate
    "x\udc80y",
    "\ud83d\ude00",  # a pair as two code points: JSON-escaped it becomes one emoji
    "\ufeff",
    "\u200b",
    "\u2028\u2029",
    "🙂" * 3,
    "null",
    '"}',
    "\\",
]
LONG_TEXTS = st.builds(
    lambda n, unit: (unit * n)[:n],
    st.sampled_from([MAX_CHARS - 1, MAX_CHARS, MAX_CHARS + 1, 2 * MAX_CHARS]),
    st.sampled_from(["a", "é", "🙂", "a b ", "\x00"]),
)
texts = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Zs", "Lo", "So"]), max_size=12),
    st.sampled_from(ODD_TEXTS),
)
HUGE_INTS = [2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400]
integers = st.one_of(st.integers(-3, 40_000), st.sampled_from(HUGE_INTS))
floats = st.one_of(st.floats(), st.sampled_from([1.0, 3.0, 1e400, -0.0, 5e-324]))
scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | texts, inner, max_size=4),
    max_leaves=10,
)


token_ids = st.one_of(st.integers(-2, 31_000), st.sampled_from(HUGE_INTS), st.booleans(), floats, st.none(), texts)
inputs = st.one_of(
    texts,
    LONG_TEXTS,
    st.lists(texts, max_size=5),
    st.lists(LONG_TEXTS | texts, max_size=2),
    st.lists(token_ids, max_size=5),
    st.lists(st.lists(token_ids, max_size=4), max_size=3),
    st.lists(st.integers(0, 30_000), min_size=1, max_size=8),
    json_values,
)
int_like = st.one_of(
    st.integers(-2, MAX_DIMENSIONS + 2), st.sampled_from(HUGE_INTS), floats, st.booleans(), texts, st.none()
)
bool_like = st.one_of(st.booleans(), st.sampled_from([0, 1, 1.0, "true", "yes", "on", "", None, [], {}]))
models = st.one_of(st.sampled_from(["all-MiniLM-L6-v2", "", "no-such-model"]), texts, json_values)

good_texts = st.text(max_size=30).filter(lambda t: t.strip() and "\x00" not in t)
good_inputs = st.one_of(good_texts, st.lists(good_texts, min_size=1, max_size=4))
good_token_inputs = st.one_of(
    good_inputs,
    st.lists(st.integers(1000, 30_000), min_size=1, max_size=8),
    st.lists(st.lists(st.integers(1000, 30_000), min_size=1, max_size=5), min_size=1, max_size=3),
)
good_dimensions = st.none() | st.integers(1, MAX_DIMENSIONS)


@st.composite
def one_field_wrong(draw: st.DrawFn, good: dict, bad: dict, required: tuple[str, ...]) -> dict:
    """A valid body (optional fields sometimes left out) with at most one field replaced by a hostile value."""
    body = {key: draw(value) for key, value in good.items() if key in required or draw(st.booleans())}
    victim = draw(st.sampled_from([None, *bad]))
    if victim is not None:
        body[victim] = draw(bad[victim])
    return body


openai_bodies = one_field_wrong(
    good={
        "input": good_token_inputs,
        "model": st.just("all-MiniLM-L6-v2"),
        "encoding_format": st.sampled_from(["float", "base64"]),
        "dimensions": good_dimensions,
        "user": good_texts,
    },
    bad={
        "input": inputs,
        "model": models,
        "encoding_format": json_values,
        "dimensions": int_like,
        "user": texts | json_values,
        "\ud800": scalars,
    },
    required=("input",),
)
tei_bodies = one_field_wrong(
    good={
        "inputs": good_inputs,
        "normalize": st.booleans(),
        "truncate": st.booleans(),
        "dimensions": good_dimensions,
        "model": st.just("all-MiniLM-L6-v2"),
    },
    bad={"inputs": inputs, "normalize": bool_like, "truncate": bool_like, "dimensions": int_like, "model": models},
    required=("inputs",),
)
similarity_inputs = one_field_wrong(
    good={"source_sentence": good_texts, "sentences": good_inputs},
    bad={"source_sentence": texts | LONG_TEXTS | json_values, "sentences": inputs},
    required=("source_sentence", "sentences"),
)
similarity_bodies = one_field_wrong(
    good={"inputs": similarity_inputs, "truncate": st.booleans(), "model": st.just("all-MiniLM-L6-v2")},
    bad={"inputs": json_values, "truncate": bool_like, "model": models},
    required=("inputs",),
)


# -- bytes on the wire ----------------------------------------------------------------------------------------------


def as_ascii(value: object) -> bytes:
    """Lone surrogates become JSON escapes; NaN and Infinity stay as the non-JSON words Python writes."""
    return json.dumps(value, ensure_ascii=True).encode("ascii")


def as_raw(value: object) -> bytes:
    """Lone surrogates become their own three bytes: not valid UTF-8."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def wire(draw: st.DrawFn, values: st.SearchStrategy) -> bytes:
    value = draw(values)
    raw = draw(st.sampled_from([as_ascii, as_raw]))(value)
    mangle = draw(st.sampled_from(["none", "none", "none", "cut", "garbage", "bom", "utf16", "nul"]))
    if mangle == "cut":
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if mangle == "garbage":
        return raw + draw(st.binary(min_size=1, max_size=8))
    if mangle == "bom":
        return b"\xef\xbb\xbf" + raw
    if mangle == "utf16":
        return raw.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    if mangle == "nul":
        return raw + b"\x00"
    return raw


@st.composite
def deeply_nested(draw: st.DrawFn, key: str) -> bytes:
    """Lists nested up to 100,000 levels deep, alone or as the value of `key` (past any recursion limit)."""
    depth = draw(st.sampled_from([2, 100, 1023, 1025, 5000, 100_000]))
    leaf = draw(st.sampled_from([b'"a"', b"1", b"null", b""]))
    nest = b"[" * depth + leaf + b"]" * depth
    return draw(st.sampled_from([nest, b'{"%s": %s}' % (key.encode(), nest)]))


def bodies(shaped: st.SearchStrategy, key: str) -> st.SearchStrategy:
    return st.one_of(
        wire(shaped),
        wire(shaped),
        wire(json_values),  # not an object, or an object of anything
        deeply_nested(key),
        st.binary(max_size=40),
        st.sampled_from([b"", b" ", b"{", b"}", b"[]", b"null", b"NaN", b'{"input": NaN}', b"\xff\xfe", b"{}" * 2]),
    )


content_types = st.sampled_from(
    ["application/json"] * 6
    + ["application/json; charset=utf-16", "application/json; charset=nope", "text/plain", "application/x-json"]
)


# -- answers --------------------------------------------------------------------------------------------------------


def assert_sane(answer: Answer, shape_check) -> None:
    assert answer.status_code < 500, answer.content[:500]
    body = answer.json()
    if answer.status_code >= 400:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and isinstance(error["code"], str)
        assert error["param"] is None or isinstance(error["param"], str)
    else:
        assert answer.status_code == 200
        shape_check(body)


def is_vector(row: object, width: int | None = None) -> bool:
    return (
        isinstance(row, list)
        and bool(row)
        and all(isinstance(x, float) and math.isfinite(x) for x in row)
        and (width is None or len(row) == width)
    )


def openai_shape(body: dict) -> None:
    assert body["object"] == "list" and isinstance(body["model"], str)
    assert [item["index"] for item in body["data"]] == list(range(len(body["data"])))
    for item in body["data"]:
        assert item["object"] == "embedding"
        assert is_vector(item["embedding"]) or isinstance(item["embedding"], str)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] >= 0


def tei_shape(body: list) -> None:
    assert isinstance(body, list) and body
    assert all(is_vector(row, len(body[0])) for row in body)


def similarity_shape(body: list) -> None:
    assert isinstance(body, list) and body
    assert all(isinstance(s, float) and -1.001 <= s <= 1.001 for s in body)


def vector_shape(body: dict) -> None:
    assert set(body) == {"vector"} and is_vector(body["vector"], MAX_DIMENSIONS)


async def post_both(path: str, raw: bytes, content_type: str, shape_check) -> None:
    # Django's test client re-encodes a body whose content type names a charset; `generic` sends it as is.
    drf = await DrfClient().client.generic("POST", path, raw, content_type=content_type)
    assert_sane(Answer(drf.status_code, drf.content, dict(drf.headers)), shape_check)
    assert_sane(await AsgiClient().post(path, raw, content_type), shape_check)


# -- tests ----------------------------------------------------------------------------------------------------------


@FUZZ
@given(raw=bodies(openai_bodies, "input"), content_type=content_types)
async def test_hostile_openai_bodies_never_get_a_5xx(raw, content_type):
    await post_both("/v1/embeddings", raw, content_type, openai_shape)


@FUZZ
@given(raw=bodies(tei_bodies, "inputs"), content_type=content_types)
async def test_hostile_tei_bodies_never_get_a_5xx(raw, content_type):
    await post_both("/embed", raw, content_type, tei_shape)


@FUZZ
@given(raw=bodies(similarity_bodies, "inputs"), content_type=content_types)
async def test_hostile_similarity_bodies_never_get_a_5xx(raw, content_type):
    await post_both("/similarity", raw, content_type, similarity_shape)


def encode_pair(key: bytes, value: bytes, escape: bool) -> str:
    if not escape:  # stray '%', '+', ';' and friends, as they come
        return key.decode("latin-1") + "=" + value.decode("latin-1")
    return urllib.parse.quote_from_bytes(key) + "=" + urllib.parse.quote_from_bytes(value)


query_values = st.one_of(
    texts.map(lambda t: t.encode("utf-8", "surrogatepass")),  # raw surrogates: invalid UTF-8 once unescaped
    st.binary(max_size=20),
    st.sampled_from([b"%", b"%zz", b"%ED%A0%80", b"+", b"a+b", b";", b"&&", b"=", b"%00"]),
)
query_keys = st.sampled_from([b"sentence", b"sentence", b"sentence", b"Sentence", b"sentence[]", b"", b"\xff"])
query_strings = st.lists(
    st.builds(encode_pair, query_keys, query_values, st.sampled_from([True, True, False])),
    max_size=4,
).map("&".join)


@FUZZ
@given(query=query_strings, path=st.sampled_from(["/get_vector", "/get_vector_simple", "/get_vector_async"]))
async def test_hostile_query_strings_never_get_a_5xx(query, path):
    # Only ASCII reaches a real server's query string; what is not is sent percent-escaped.
    query = urllib.parse.quote(query, safe="".join(map(chr, range(0x21, 0x7F))), encoding="latin-1")
    for client in (DrfClient(), AsgiClient()):
        response = await client.client.get(f"{path}?{query}")
        assert_sane(Answer(response.status_code, response.content, dict(response.headers)), vector_shape)


@FUZZ
@given(query=st.binary(max_size=40) | st.binary(max_size=40).map(lambda raw: b"sentence=" + raw))
async def test_raw_query_bytes_on_the_asgi_route_never_get_a_5xx(query):
    from embedservice.asgi import application

    sent: list[dict] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays connected until the answer is sent
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/get_vector",
        "raw_path": b"/get_vector",
        "query_string": query,
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert_sane(Answer(start["status"], body, {}), vector_shape)
