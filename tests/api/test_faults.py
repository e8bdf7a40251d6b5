"""Faults seen through HTTP: a poisoned input, a full queue; with the real model behind a wrapper."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson

from vectors import conf
from vectors.engine.config import BatcherConfig
from vectors.engine.encoder import Encoder
from vectors.engine.registry import Registry


class PoisonedEncoder(Encoder):
    """The real model, except that it raises for one specific text (and can be held at a gate)."""

    poison = "POISON PILL"
    gate: threading.Event | None = None

    def encode_counted(self, texts, threads=None):
        if self.gate is not None:
            self.gate.wait(10)
        if self.poison in texts:
            raise RuntimeError("model exploded")
        return super().encode_counted(texts, threads)


def registry_with(batcher: BatcherConfig) -> Registry:
    base = conf.model_configs()[0]
    config = type(base)(**{**base.__dict__, "batcher": batcher, "warmup": False})
    return Registry([config], make_encoder=PoisonedEncoder)


async def test_a_poisoned_input_fails_only_its_own_request(client, registry_override, reference):
    registry_override(registry_with(BatcherConfig()))
    texts = ["fine one", "fine two", PoisonedEncoder.poison, "fine three"]
    responses = await asyncio.gather(*(client.get("/get_vector", {"sentence": t}) for t in texts))
    for text, response in zip(texts, responses, strict=True):
        if text == PoisonedEncoder.poison:
            assert response.status_code == 500
            body = response.json()
            assert body["error"]["code"] == "model_error"
            assert response["X-Should-Retry"] == "false"  # OpenAI SDKs would retry the same failing input
            assert "Traceback" not in response.content.decode()
        else:
            assert response.status_code == 200
    after = await client.get("/get_vector", {"sentence": "the next request"})
    assert after.status_code == 200


async def test_full_queue_answers_429_with_retry_after_and_nothing_hangs(client, registry_override):
    registry = registry_override(registry_with(BatcherConfig(max_queue_inputs=3)))
    engine = registry.get(None)
    await client.get("/get_vector", {"sentence": "load"})
    PoisonedEncoder.gate = threading.Event()
    try:
        body = orjson.dumps({"input": "held"})
        batcher = engine.batchers()[0]

        async def wait_until(condition) -> None:
            for _ in range(500):
                if condition():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("condition not reached")

        def send():
            return asyncio.ensure_future(client.post("/v1/embeddings", body))

        held = [send()]  # this one enters the model and stays there, at the gate
        await wait_until(
            lambda: batcher.counters.batches == 1 and batcher.queued_inputs == 0 and batcher.counters.requests == 2
        )
        held += [send() for _ in range(3)]  # these fill the queue to its bound
        await wait_until(lambda: batcher.queued_inputs == 3)
        started = time.perf_counter()
        refused = await client.post("/v1/embeddings", body)
        assert time.perf_counter() - started < 1.0
        assert refused.status_code == 429
        assert refused["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
    finally:
        PoisonedEncoder.gate.set()
        PoisonedEncoder.gate = None
    answered = await asyncio.wait_for(asyncio.gather(*held), 30)
    assert [r.status_code for r in answered] == [200] * 4
