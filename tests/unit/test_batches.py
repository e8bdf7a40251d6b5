"""A request's answer assembled from the batches it was split over."""

from __future__ import annotations

import asyncio

import numpy as np

from vectors.engine.batches import Pending, unsort


def test_a_request_split_over_batches_is_answered_once_with_its_rows_in_order():
    loop = asyncio.new_event_loop()
    item = Pending(["a", "b", "c"], [1, 1, 1], loop.create_future(), enqueued_at=1.0)
    item.started_at = 1.5
    item.fill(2, 3, np.array([[3.0]]), inference_ms=4.0, batch_size=8, counts=np.array([7]))
    assert not item.future.done()
    item.fill(0, 2, np.array([[1.0], [2.0]]), inference_ms=5.0, batch_size=16, counts=np.array([5, 6]))
    answer = item.future.result()
    assert answer.rows.tolist() == [[1.0], [2.0], [3.0]] and answer.tokens.tolist() == [5, 6, 7]
    assert answer.inference_ms == 9.0 and answer.batch_size == 16 and answer.queue_ms == 500.0
    loop.close()


def test_unsort_puts_rows_computed_by_length_back_in_arrival_order():
    order = np.argsort(np.array([5, 1, 3]), kind="stable")  # run as texts 1, 2, 0
    computed = np.array([[1.0], [3.0], [5.0]])
    assert unsort(computed, order).tolist() == [[5.0], [1.0], [3.0]]
