"""The HTTP API against the real packaged model: every endpoint equals SentenceTransformer.encode."""

from __future__ import annotations

import asyncio
import base64
import re

import numpy as np
import orjson
import pytest

from tests.conftest import cosines

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings turn text into vectors.",
    "今天天气很好，我们去公园散步吧。",
    "A Java system calls this service over HTTP.",
    "short",
]


async def post(client, path: str, body: object):
    return await client.post(path, orjson.dumps(body))


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def test_openai_float_vectors_equal_sentence_transformers_in_order(client, reference):
    response = await post(client, "/v1/embeddings", {"input": TEXTS, "model": "all-MiniLM-L6-v2"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [item["index"] for item in body["data"]] == list(range(len(TEXTS)))
    got = np.array([item["embedding"] for item in body["data"]])
    assert got.shape == (len(TEXTS), 384)
    assert cosines(got, reference.encode(TEXTS)).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    expected_tokens = sum(len(ids) for ids in reference.tokenizer(TEXTS)["input_ids"])
    assert body["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}
    for header in ("x-total-time", "x-queue-time", "x-inference-time"):
        assert float(response[header]) >= 0


async def test_openai_base64_decodes_to_the_same_floats(client):
    as_float = (await post(client, "/v1/embeddings", {"input": TEXTS})).json()
    as_b64 = (await post(client, "/v1/embeddings", {"input": TEXTS, "encoding_format": "base64"})).json()
    for f, b in zip(as_float["data"], as_b64["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_allclose(decoded, np.array(f["embedding"], dtype=np.float32), rtol=1e-6, atol=1e-7)


async def test_dimensions_keeps_the_first_k_components_renormalised(client, reference):
    body = (await post(client, "/v1/embeddings", {"input": TEXTS, "dimensions": 64})).json()
    got = np.array([item["embedding"] for item in body["data"]])
    assert got.shape == (len(TEXTS), 64)
    want = unit(reference.encode(TEXTS)[:, :64])
    np.testing.assert_allclose(got, want, atol=1e-4)


async def test_token_id_arrays_embed_like_their_decoded_text(client, reference):
    ids = reference.tokenizer(["hello world", "vectors for java"], add_special_tokens=False)["input_ids"]
    body = (await post(client, "/v1/embeddings", {"input": ids})).json()
    got = np.array([item["embedding"] for item in body["data"]])
    assert cosines(got, reference.encode(["hello world", "vectors for java"])).min() >= 0.9999
    single = (await post(client, "/v1/embeddings", {"input": ids[0]})).json()
    assert len(single["data"]) == 1


async def test_tei_embed_normalizes_by_default_and_returns_raw_when_asked(client, reference):
    normalized = np.array((await post(client, "/embed", {"inputs": TEXTS})).json())
    raw = np.array((await post(client, "/embed", {"inputs": TEXTS, "normalize": False})).json())
    want = reference.encode(TEXTS)
    assert cosines(normalized, want).min() >= 0.9999
    assert cosines(raw, want).min() >= 0.9999
    assert np.abs(np.linalg.norm(raw, axis=1) - 1).max() > 0.01  # really un-normalised
    one = (await post(client, "/embed", {"inputs": "a single text"})).json()
    assert len(one) == 1 and len(one[0]) == 384


async def test_tei_embed_refuses_overlong_text_unless_truncate(client, reference):
    long_text = "word " * 400
    refused = await post(client, "/embed", {"inputs": ["fine", long_text]})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "input_too_long" and "inputs[1]" in error["message"]
    cut = await post(client, "/embed", {"inputs": [long_text], "truncate": True})
    assert cut.status_code == 200
    assert cosines(np.array(cut.json()), reference.encode([long_text])).min() >= 0.9999


@pytest.mark.parametrize("path", ["/get_vector", "/get_vector_simple", "/get_vector_async"])
async def test_get_vector_routes_answer_the_write_ups_shape(client, reference, path):
    response = await client.get(path, {"sentence": "今天天气很好"})
    assert response.status_code == 200
    vector = np.array([response.json()["vector"]])
    assert vector.shape == (1, 384)
    assert cosines(vector, reference.encode(["今天天气很好"])).min() >= 0.9999


async def test_similarity_scores_equal_reference_cosines(client, reference):
    body = {"inputs": {"source_sentence": "a cat sits", "sentences": ["a kitten rests", "stock markets fell"]}}
    scores = (await post(client, "/similarity", body)).json()
    rows = reference.encode(["a cat sits", "a kitten rests", "stock markets fell"])
    np.testing.assert_allclose(scores, rows[1:] @ rows[0], atol=1e-4)
    assert scores[0] > scores[1]


async def test_batched_and_alone_give_the_same_vectors(client, reference):
    texts = [f"concurrent request {i} about topic {i % 5}" for i in range(40)]
    responses = await asyncio.gather(*(client.get("/get_vector", {"sentence": t}) for t in texts))
    got = np.array([r.json()["vector"] for r in responses])
    alone = np.array([reference.encode([t])[0] for t in texts])
    assert cosines(got, alone).min() >= 0.9999


async def test_models_info_health_and_ready_describe_the_service(client):
    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list" and models["data"][0]["id"] == "all-MiniLM-L6-v2"
    await client.get("/get_vector", {"sentence": "load it"})
    info = (await client.get("/info")).json()
    model = info["models"][0]
    assert model["dimensions"] == 384 and model["max_input_tokens"] == 256 and model["device"] == "cpu"
    assert model["torch_linear"] in ("torch", "onednn")  # traced (which one on which CPU: tests/unit/test_onednn.py)
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200, ready.json()


async def test_openapi_schema_and_swagger_ui_are_served_locally(client):
    schema = await client.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    assert "/v1/embeddings" in schema.json()["paths"]
    docs = await client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    # Nothing loaded from elsewhere (a random nonce in the page may spell "cdn": look for addresses).
    assert "swagger-ui" in html and not re.search(r"(src|href)=[\"'](https?:)?//", html)


async def test_usage_counts_what_the_model_saw_without_tokenising_on_the_event_loop(client, reference, monkeypatch):
    from vectors import conf

    engine = conf.get_registry().get()
    encoder, batching = engine.encoder, engine.config.batcher
    assert encoder.counts_in_call  # the traced torch model counts inside its call
    loop_counts = []
    real = encoder.token_counts
    monkeypatch.setattr(encoder, "token_counts", lambda texts: loop_counts.append(list(texts)) or real(texts))
    long_text = "word " * 400  # 402 tokens, cut to the model's 256
    texts = [*TEXTS, long_text]
    body = (await post(client, "/v1/embeddings", {"input": texts})).json()
    exact = [min(len(ids), 256) for ids in reference.tokenizer(texts)["input_ids"]]
    assert exact[-1] == 256
    assert body["usage"]["prompt_tokens"] == sum(exact)
    # 256 tokens x a full batch may pass the token budget only where the batch is big enough: then the
    # texts are counted exactly first, to schedule by; else their length serves.
    assert loop_counts == ([texts] if 256 * batching.max_batch_size > batching.max_batch_tokens else [])
    loop_counts.clear()
    body = (await post(client, "/v1/embeddings", {"input": TEXTS})).json()
    assert body["usage"]["prompt_tokens"] == sum(len(ids) for ids in reference.tokenizer(TEXTS)["input_ids"])
    assert loop_counts == []  # short texts: scheduled by length, counted by the model call
    response = await post(client, "/embed", {"inputs": TEXTS})  # TEI: truncate=false must refuse before queueing
    assert response.status_code == 200 and loop_counts == [TEXTS]


def test_scheduling_estimates_are_lengths_unless_the_token_budget_could_bind():
    from vectors.api.core import _scheduling_estimates
    from vectors.engine.config import BatcherConfig

    roomy = BatcherConfig(max_batch_size=64, max_batch_tokens=16384)
    assert _scheduling_estimates(["abc", "x" * 1000], 256, roomy) == [5, 256]
    tight = BatcherConfig(max_batch_size=128, max_batch_tokens=16384)  # 128 tokens a text at most
    assert _scheduling_estimates(["abc", "x" * 126], 256, tight) == [5, 128]
    assert _scheduling_estimates(["abc", "x" * 127], 256, tight) is None  # count exactly
