"""The write-up's two baseline views: routed only with EMBED_BENCH_VIEWS, answering what /get_vector answers."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from django.test import AsyncClient
from django.urls import clear_url_caches


def reload_routes() -> None:
    import embedservice.urls
    import vectors.api.urls

    importlib.reload(vectors.api.urls)
    importlib.reload(embedservice.urls)
    clear_url_caches()


@pytest.fixture
def bench_routes(settings):
    settings.EMBEDDINGS = {**settings.EMBEDDINGS, "BENCH_VIEWS": True}
    reload_routes()
    yield
    settings.EMBEDDINGS = {**settings.EMBEDDINGS, "BENCH_VIEWS": False}
    reload_routes()


async def test_bench_views_are_not_routed_unless_the_setting_is_on():
    client = AsyncClient()
    for path in ("/bench/get_vector_sync", "/bench/get_vector_async"):
        assert (await client.get(path, {"sentence": "hello"})).status_code == 404


@pytest.mark.parametrize("path", ["/bench/get_vector_sync", "/bench/get_vector_async"])
async def test_bench_view_answers_the_same_normalised_vector_as_get_vector(bench_routes, reference, path):
    client = AsyncClient()
    sentence = "The customer asked about the invoice from last month."
    baseline = await client.get(path, {"sentence": sentence})
    batched = await client.get("/get_vector", {"sentence": sentence})
    assert baseline.status_code == 200, baseline.content
    vector = np.asarray(baseline.json()["vector"])
    assert vector.shape == (384,)
    assert np.allclose(vector, reference.encode([sentence])[0], atol=1e-5)
    assert np.allclose(vector, np.asarray(batched.json()["vector"]), atol=1e-5)


@pytest.mark.parametrize("path", ["/bench/get_vector_sync", "/bench/get_vector_async"])
async def test_bench_view_refuses_a_blank_sentence_with_400(bench_routes, path):
    answer = await AsyncClient().get(path, {"sentence": "  "})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "sentence"
