"""Several models in one process, each on its own backend and batcher, chosen by the request's model."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from django.test import AsyncClient

from tests.conftest import cosines
from vectors.engine.config import ModelConfig
from vectors.engine.registry import Registry


@pytest.fixture(scope="module")
def two_models(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> list[ModelConfig]:
    cache = str(tmp_path_factory.mktemp("routing"))
    return [
        ModelConfig("minilm", model_path, device="cpu"),
        ModelConfig("minilm-int8", model_path, device="cpu", backend="onnx", dtype="int8", cache_dir=cache),
    ]


async def embed(client: AsyncClient, body: dict):
    return await client.post("/v1/embeddings", orjson.dumps(body), content_type="application/json")


async def test_the_model_field_picks_the_engine_and_each_has_its_own_batcher(registry_override, two_models, reference):
    registry = registry_override(Registry(two_models))
    client = AsyncClient()
    texts = ["a cat sits on the mat", "the quarterly report is late"]
    plain = (await embed(client, {"input": texts, "model": "minilm"})).json()
    int8 = (await embed(client, {"input": texts, "model": "minilm-int8"})).json()
    default = (await embed(client, {"input": texts})).json()
    assert plain["model"] == "minilm" and int8["model"] == "minilm-int8" and default["model"] == "minilm"
    rows = {name: np.array([d["embedding"] for d in body["data"]]) for name, body in [("p", plain), ("q", int8)]}
    truth = reference.encode(texts)
    assert cosines(rows["p"], truth).min() >= 0.9999
    assert 0.98 <= cosines(rows["q"], truth).min() < 0.99999  # int8: close, and really a different backend
    engines = {engine.name: engine for engine in registry.engines()}
    assert engines["minilm"].encoder.backend == "torch" and engines["minilm-int8"].encoder.backend == "onnx"
    assert engines["minilm"].batcher() is not engines["minilm-int8"].batcher()
    assert engines["minilm"].executor is not engines["minilm-int8"].executor


async def test_models_and_info_list_every_model_with_its_backend(registry_override, two_models):
    registry_override(Registry(two_models))
    client = AsyncClient()
    await embed(client, {"input": "load both", "model": "minilm-int8"})
    listed = (await client.get("/v1/models")).json()
    assert [m["id"] for m in listed["data"]] == ["minilm", "minilm-int8"]
    info = {m["id"]: m for m in (await client.get("/info")).json()["models"]}
    assert (info["minilm-int8"]["backend"], info["minilm-int8"]["dtype"]) == ("onnx", "int8")
    assert (info["minilm"]["backend"], info["minilm"]["dtype"]) == ("torch", "fp32")


async def test_an_unknown_model_is_404_with_the_valid_names(registry_override, two_models):
    registry_override(Registry(two_models))
    answer = await embed(AsyncClient(), {"input": "x", "model": "gpt-9"})
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert "minilm" in message and "minilm-int8" in message
