"""Closing engines: a replaced registry leaves no batcher task pending on any loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading

import numpy as np
import pytest
from django.conf import settings
from django.test import override_settings

from vectors import conf
from vectors.engine.config import ModelConfig
from vectors.engine.errors import EngineStopped
from vectors.engine.registry import Registry


class FakeEncoder:
    """Just enough of an Encoder for an engine with one lane."""

    device = "cpu"
    threads_per_call_adjustable = False

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def warm(self) -> None:
        pass

    def encode_counted(self, texts, threads=None):
        return np.ones((len(texts), 3), dtype=np.float32), None


def fake_registry() -> Registry:
    return Registry([ModelConfig("fake", "unused", warmup=False)], make_encoder=FakeEncoder)


def batcher_tasks() -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "micro-batcher"]


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_closing_a_registry_on_the_batchers_loop_ends_its_task_and_refuses_new_work():
    registry = fake_registry()
    batcher = registry.get().batcher()
    await batcher.submit(["warm"], [2])
    assert len(batcher_tasks()) == 1
    registry.close()
    await turns()
    assert batcher_tasks() == []
    with pytest.raises(EngineStopped):
        await batcher.submit(["after close"], [2])


async def test_closing_a_registry_from_another_thread_ends_the_task_on_its_own_loop():
    registry = fake_registry()
    batcher = registry.get().batcher()
    await batcher.submit(["warm"], [2])
    await asyncio.to_thread(registry.close)
    await turns()
    assert batcher_tasks() == []


async def test_a_settings_change_closes_the_registry_made_from_the_old_settings(monkeypatch, caplog):
    monkeypatch.setattr(conf, "Registry", functools.partial(Registry, make_encoder=FakeEncoder))
    monkeypatch.setattr(conf, "_registry", None)  # restored after the test, with the one it made from settings
    monkeypatch.setattr(conf, "_from_settings", None)
    batcher = conf.get_registry().get().batcher()
    await batcher.submit(["warm"], [2])
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "MAX_QUEUE_INPUTS": 7}):
        assert conf.get_registry().get().config.batcher.max_queue_inputs == 7
    await turns()
    assert batcher_tasks() == []
    del batcher
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert "Task was destroyed but it is pending" not in caplog.text


async def test_a_registry_installed_by_a_test_is_its_own_to_close(registry_override):
    registry = registry_override(fake_registry())
    batcher = registry.get().batcher()
    await batcher.submit(["warm"], [2])
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, "MAX_QUEUE_INPUTS": 7}):
        pass
    await turns()
    assert len(batcher_tasks()) == 1
    assert (await batcher.submit(["still served"], [2])).rows.shape == (1, 3)


async def test_a_call_running_as_the_registry_closes_answers_its_waiter_with_engine_stopped(caplog):
    started, release = threading.Event(), threading.Event()

    class SlowEncoder(FakeEncoder):
        def encode_counted(self, texts, threads=None):
            started.set()
            release.wait(5)
            return super().encode_counted(texts, threads)

    registry = Registry([ModelConfig("slow", "unused", warmup=False)], make_encoder=SlowEncoder)
    waiting = asyncio.ensure_future(registry.get().batcher().submit(["slow"], [2]))
    await asyncio.to_thread(started.wait, 5)
    with caplog.at_level(logging.ERROR):
        registry.close()
        with pytest.raises(EngineStopped):
            await waiting
        release.set()  # the call returns after its waiter was answered: nobody is left to take its rows
        await asyncio.sleep(0.05)
    assert caplog.records == []
    with pytest.raises(EngineStopped, match="was closed"):  # no new batcher on a closed model, on any loop
        await asyncio.to_thread(asyncio.run, _batcher_of(registry))


async def _batcher_of(registry: Registry) -> None:
    registry.get().batcher()
