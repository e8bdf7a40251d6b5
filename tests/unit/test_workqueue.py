"""The batcher's queue: batches cut by size and token budget, dropped and expired requests skipped."""

from __future__ import annotations

import asyncio

import pytest

from vectors.engine.batches import Pending
from vectors.engine.workqueue import WorkQueue


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def pending(loop, texts, tokens=None) -> Pending:
    return Pending(texts, tokens or [len(t) for t in texts], loop.create_future(), enqueued_at=1.0)


def test_a_batch_takes_requests_in_arrival_order_up_to_the_size_cap(loop):
    queue = WorkQueue(max_batch_tokens=10_000)
    first, second = pending(loop, ["a", "bb"]), pending(loop, ["ccc", "dddd", "e"])
    queue.put(first)
    queue.put(second)
    slices, texts, tokens = queue.take(cap=3, now=2.0)
    assert texts == ["a", "bb", "ccc"] and tokens == [1, 2, 3]
    assert [(s.pending, s.start, s.stop) for s in slices] == [(first, 0, 2), (second, 0, 1)]
    assert queue.queued_inputs == 2 and first.started_at == 2.0 and second.started_at == 2.0
    slices, texts, _ = queue.take(cap=3, now=3.0)
    assert texts == ["dddd", "e"] and [(s.start, s.stop) for s in slices] == [(1, 3)]
    assert second.started_at == 2.0, "a request's start is when its first text was taken"
    assert queue.queued_inputs == 0 and not queue


def test_the_token_budget_counts_every_text_at_the_longest_ones_length(loop):
    queue = WorkQueue(max_batch_tokens=12)
    queue.put(pending(loop, ["x"] * 5, [2, 2, 2, 4, 2]))
    _, texts, tokens = queue.take(cap=100, now=0.0)
    assert tokens == [2, 2, 2], "a fourth text of 4 tokens pads the batch to 4 x 4 = 16 > 12"
    _, _, tokens = queue.take(cap=100, now=0.0)
    assert tokens == [4, 2]


def test_one_text_over_the_budget_still_makes_a_batch_of_its_own(loop):
    queue = WorkQueue(max_batch_tokens=8)
    queue.put(pending(loop, ["long"], [50]))
    _, texts, _ = queue.take(cap=100, now=0.0)
    assert texts == ["long"]


def test_dropped_and_answered_requests_are_skipped(loop):
    queue = WorkQueue(max_batch_tokens=10_000)
    dropped, answered, live = pending(loop, ["a"]), pending(loop, ["b"]), pending(loop, ["c", "d"])
    for item in (dropped, answered, live):
        queue.put(item)
    queue.drop(dropped)
    answered.future.cancel()
    assert queue.queued_inputs == 3, "an answered request counts until a batch passes it"
    _, texts, _ = queue.take(cap=10, now=0.0)
    assert texts == ["c", "d"] and queue.queued_inputs == 0


def test_expire_drops_only_a_request_no_batch_has_started(loop):
    queue = WorkQueue(max_batch_tokens=10_000)
    started, waiting = pending(loop, ["a", "b"]), pending(loop, ["c"])
    queue.put(started)
    queue.put(waiting)
    queue.take(cap=1, now=0.0)
    assert not queue.expire(started), "half of it is in a batch: it runs to the end"
    assert queue.expire(waiting)
    assert queue.queued_inputs == 1 and waiting.dropped


def test_clear_returns_what_was_queued_and_zeroes_the_count(loop):
    queue = WorkQueue(max_batch_tokens=10_000)
    items = [pending(loop, ["a", "b"]), pending(loop, ["c"])]
    for item in items:
        queue.put(item)
    assert queue.clear() == items
    assert queue.queued_inputs == 0 and not queue and all(item.dropped for item in items)
