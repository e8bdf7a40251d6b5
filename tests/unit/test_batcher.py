"""The micro-batcher with a fake encoder that records every call."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vectors.engine.batcher import MicroBatcher
from vectors.engine.config import BatcherConfig
from vectors.engine.errors import EncodeFailed, EngineStopped, EngineStuck, QueueFull, QueueTimeout


class FakeEncoder:
    """Encodes text i as a row derived from the text; records batch sizes; can be poisoned or slowed."""

    def __init__(self, delay_s: float = 0.0, poison: str | None = None) -> None:
        self.delay_s = delay_s
        self.poison = poison
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.gate: threading.Event | None = None

    def __call__(self, texts):
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.poison is not None and self.poison in texts:
            raise ValueError("poisoned input")
        return np.array([[len(t), sum(map(ord, t)) % 997, 1.0] for t in texts], dtype=np.float32)


def expected(text: str) -> list[float]:
    return [len(text), sum(map(ord, text)) % 997, 1.0]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode-test")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def make(executor, encoder, **config) -> MicroBatcher:
    return MicroBatcher(encoder, BatcherConfig(**config), executor)


async def test_concurrent_requests_share_model_calls_and_get_their_own_rows(executor):
    encoder = FakeEncoder(delay_s=0.02)
    batcher = make(executor, encoder)
    texts = [f"sentence number {i}" + "x" * (i % 7) for i in range(200)]
    results = await asyncio.gather(*(batcher.submit([t], [5 + i % 7]) for i, t in enumerate(texts)))
    for text, result in zip(texts, results, strict=True):
        assert result.rows.tolist() == [expected(text)]
    assert len(encoder.calls) < 20
    assert sum(len(c) for c in encoder.calls) == 200
    assert encoder.threads == {"encode-test_0"}


async def test_an_idle_request_is_encoded_alone_without_waiting(executor):
    encoder = FakeEncoder()
    batcher = make(executor, encoder, max_wait_ms=50)
    result = await batcher.submit(["alone"], [3])
    assert encoder.calls == [["alone"]]
    assert result.batch_size == 1
    assert result.queue_ms < 50


async def test_multi_input_request_keeps_its_order_even_when_length_sorted(executor):
    encoder = FakeEncoder()
    batcher = make(executor, encoder)
    texts = ["a much longer text than the others", "b", "medium text", "cc"]
    result = await batcher.submit(texts, [9, 2, 4, 3])
    assert result.rows.tolist() == [expected(t) for t in texts]
    assert encoder.calls == [["b", "cc", "medium text", "a much longer text than the others"]]


async def test_a_request_larger_than_a_batch_is_split_and_reassembled(executor):
    encoder = FakeEncoder()
    batcher = make(executor, encoder, max_batch_size=4)
    texts = [f"t{i}" for i in range(10)]
    result = await batcher.submit(texts, [3] * 10)
    assert [len(c) for c in encoder.calls] == [4, 4, 2]
    assert result.rows.tolist() == [expected(t) for t in texts]


async def test_token_budget_cuts_batches_by_padded_size(executor):
    encoder = FakeEncoder(delay_s=0.01)
    batcher = make(executor, encoder, max_batch_size=100, max_batch_tokens=100)
    # 10 texts of 30 tokens: at most 3 per batch (3 x 30 = 90 <= 100 < 120).
    await asyncio.gather(*(batcher.submit([f"text {i}"], [30]) for i in range(10)))
    assert max(len(c) for c in encoder.calls) == 3


async def test_submit_answers_queue_full_at_once_when_queue_is_full(executor):
    encoder = FakeEncoder()
    encoder.gate = threading.Event()
    batcher = make(executor, encoder, max_queue_inputs=4)
    first = asyncio.ensure_future(batcher.submit(["running"], [2]))
    await asyncio.sleep(0.05)  # first batch is now inside the (gated) model call
    queued = [asyncio.ensure_future(batcher.submit([f"q{i}"], [2])) for i in range(4)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    with pytest.raises(QueueFull):
        await batcher.submit(["one too many"], [2])
    # The model call holds the only slot until the gate opens, so a wait for room would never end: any
    # bound far under the queue timeout proves "at once"; 0.5 s leaves room for a busy machine.
    assert time.perf_counter() - started < 0.5
    encoder.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), 5)
    assert batcher.counters.rejected_full == 1
    assert batcher.queued_inputs == 0


async def test_a_request_waiting_past_the_queue_deadline_gets_queue_timeout(executor):
    encoder = FakeEncoder()
    encoder.gate = threading.Event()
    batcher = make(executor, encoder, queue_timeout_ms=100)
    first = asyncio.ensure_future(batcher.submit(["blocking"], [2]))
    await asyncio.sleep(0.02)
    with pytest.raises(QueueTimeout):
        await asyncio.wait_for(batcher.submit(["late"], [2]), 5)
    assert batcher.queued_inputs == 0
    encoder.gate.set()
    await asyncio.wait_for(first, 5)
    assert ["late"] not in encoder.calls


async def test_poisoned_input_fails_only_its_own_request(executor):
    encoder = FakeEncoder(delay_s=0.01, poison="POISON")
    batcher = make(executor, encoder)
    texts = ["fine 1", "fine 2", "POISON", "fine 3", "fine 4"]
    results = await asyncio.gather(*(batcher.submit([t], [3]) for t in texts), return_exceptions=True)
    for text, result in zip(texts, results, strict=True):
        if text == "POISON":
            assert isinstance(result, EncodeFailed)
        else:
            assert result.rows.tolist() == [expected(text)]
    after = await batcher.submit(["next request"], [3])
    assert after.rows.tolist() == [expected("next request")]
    assert batcher.counters.failed == 1


async def test_cancelled_request_is_skipped_and_frees_its_queue_room(executor):
    encoder = FakeEncoder()
    encoder.gate = threading.Event()
    batcher = make(executor, encoder)
    first = asyncio.ensure_future(batcher.submit(["running"], [2]))
    await asyncio.sleep(0.02)
    gone = asyncio.ensure_future(batcher.submit(["client went away"], [2]))
    stays = asyncio.ensure_future(batcher.submit(["client stays"], [2]))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert batcher.queued_inputs == 1
    encoder.gate.set()
    await asyncio.wait_for(asyncio.gather(first, stays), 5)
    assert all("client went away" not in call for call in encoder.calls)


async def test_stuck_model_fails_waiters_with_engine_stuck_and_recovers(executor):
    encoder = FakeEncoder()
    encoder.gate = threading.Event()
    batcher = make(executor, encoder, inference_timeout_ms=100)
    with pytest.raises(EngineStuck):
        await asyncio.wait_for(batcher.submit(["hangs"], [2]), 5)
    assert not batcher.healthy
    with pytest.raises(EngineStuck):
        await batcher.submit(["refused while stuck"], [2])
    encoder.gate.set()
    for _ in range(100):
        if batcher.healthy:
            break
        await asyncio.sleep(0.01)
    assert batcher.healthy
    result = await asyncio.wait_for(batcher.submit(["after recovery"], [2]), 5)
    assert result.rows.tolist() == [expected("after recovery")]


async def test_drain_finishes_queued_work_then_refuses_new_work(executor):
    encoder = FakeEncoder(delay_s=0.02)
    batcher = make(executor, encoder)
    waiting = [asyncio.ensure_future(batcher.submit([f"t{i}"], [2])) for i in range(20)]
    await asyncio.sleep(0)
    await asyncio.wait_for(batcher.drain(), 5)
    assert all(w.done() and not w.exception() for w in waiting)
    with pytest.raises(EngineStopped):
        await batcher.submit(["after drain"], [2])


async def test_a_dead_batcher_task_fails_its_waiters_instead_of_hanging(executor):
    encoder = FakeEncoder()
    batcher = make(executor, encoder)

    def broken_take(cap, now):
        raise RuntimeError("bug in batch forming")

    batcher._queue.take = broken_take  # type: ignore[method-assign]
    with pytest.raises(EncodeFailed):
        await asyncio.wait_for(batcher.submit(["x"], [2]), 5)


async def test_token_counts_from_the_model_call_come_back_in_each_requests_order(executor):
    def counting(texts):  # the model call's own count of each text: here 100 + its length
        rows = np.array([expected(t) for t in texts], dtype=np.float32)
        return rows, np.array([100 + len(t) for t in texts])

    batcher = make(executor, counting, max_batch_size=4)
    requests = [["ccc", "a", "bbbbb"], ["dd", "e" * 9, "f", "gggg", "hh"]]  # sorted and split across batches
    results = await asyncio.gather(*(batcher.submit(texts, [len(t) for t in texts]) for texts in requests))
    for texts, result in zip(requests, results, strict=True):
        assert result.rows.tolist() == [expected(t) for t in texts]
        assert result.tokens.tolist() == [100 + len(t) for t in texts]
    alone = await batcher.submit(["x"], [1])
    assert alone.tokens.tolist() == [101]
    plain = await make(executor, FakeEncoder()).submit(["x"], [1])
    assert plain.tokens is None  # a call that returns rows alone: the submitted counts stand


async def test_a_split_request_that_fails_gives_its_queued_texts_back_to_the_queue_room(executor):
    encoder = FakeEncoder(poison="POISON")
    batcher = make(executor, encoder, max_batch_size=4, max_queue_inputs=12)
    texts = ["POISON", *(f"text {i}" for i in range(9))]
    with pytest.raises(EncodeFailed):
        await asyncio.wait_for(batcher.submit(texts, [3] * len(texts)), 5)
    assert batcher.queued_inputs == 0  # the six texts never taken no longer count against the queue
    result = await asyncio.wait_for(batcher.submit([f"after {i}" for i in range(8)], [3] * 8), 5)
    assert result.rows.tolist() == [expected(f"after {i}") for i in range(8)]
    assert all("text 8" not in call for call in encoder.calls)  # the failed request's rest was not run


async def test_rows_that_do_not_fit_the_texts_fail_the_request_instead_of_leaving_it_waiting(executor):
    calls = []

    def short(texts):
        calls.append(list(texts))
        rows = np.array([expected(t) for t in texts], dtype=np.float32)
        return rows[:-1] if texts[0].startswith("broken") else rows

    batcher = MicroBatcher(short, BatcherConfig(), executor)
    with pytest.raises(EncodeFailed, match="internal batcher failure"):
        await asyncio.wait_for(batcher.submit(["broken a", "broken b"], [3, 3]), 5)
    assert batcher.queued_inputs == 0
    result = await asyncio.wait_for(batcher.submit(["fine"], [3]), 5)
    assert result.rows.tolist() == [expected("fine")]


async def run_behind_a_held_call(batcher: MicroBatcher, held: threading.Event, texts: list[str]) -> list:
    """Submit `texts` while a first call holds the lane, so that they all go into the next batch together."""
    first = asyncio.ensure_future(batcher.submit(["hold"], [2]))
    await asyncio.sleep(0.05)
    waiting = [asyncio.ensure_future(batcher.submit([t], [3])) for t in texts]
    await asyncio.sleep(0.02)
    held.set()
    await asyncio.wait_for(asyncio.gather(first, return_exceptions=True), 5)
    return await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)


def held_poisoned_model(held: threading.Event, rowless: str | None = None):
    """A model whose call of ["hold"] waits for `held`, that fails every call holding "POISON", and that gives
    `rowless` no row when it runs alone."""

    def model(texts):
        if texts == ["hold"]:
            held.wait(5)
        if "POISON" in texts:
            raise ValueError("poisoned input")
        rows = np.array([expected(t) for t in texts], dtype=np.float32)
        return rows[:0] if texts == [rowless] else rows

    return model


async def test_a_request_rerun_alone_whose_rows_do_not_fit_its_texts_fails_instead_of_being_answered(executor):
    held = threading.Event()
    batcher = MicroBatcher(held_poisoned_model(held, rowless="short alone"), BatcherConfig(), executor)
    fine, short, poisoned = await run_behind_a_held_call(batcher, held, ["fine", "short alone", "POISON"])
    assert fine.rows.tolist() == [expected("fine")]
    assert isinstance(short, EncodeFailed) and isinstance(poisoned, EncodeFailed)
    assert batcher.counters.failed == 2


async def test_a_failing_batch_hook_while_a_batch_is_isolated_fails_those_requests_not_the_batcher(executor, caplog):
    held = threading.Event()

    def hook(stats) -> None:
        if stats.requests == 1 and stats.size == 1:
            raise RuntimeError("metrics backend broke")

    batcher = MicroBatcher(held_poisoned_model(held), BatcherConfig(), executor, on_batch=hook)
    fine, poisoned = await run_behind_a_held_call(batcher, held, ["fine", "POISON"])
    assert isinstance(fine, EncodeFailed) and "internal batcher failure: RuntimeError" in str(fine)
    assert isinstance(poisoned, EncodeFailed) and "the model failed on this input" in str(poisoned)
    assert "a micro-batcher task died" not in caplog.text
    pair = await asyncio.gather(batcher.submit(["a", "b"], [2, 2]))  # two texts: the hook lets it through
    assert pair[0].rows.tolist() == [expected("a"), expected("b")]


async def test_an_empty_submit_is_refused_rather_than_queued(executor):
    batcher = make(executor, FakeEncoder())
    with pytest.raises(ValueError, match="at least one text"):
        await batcher.submit([], [])
    assert batcher.queued_inputs == 0
