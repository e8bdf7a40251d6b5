"""A request's answer assembled from the batches it was split over."""

from __future__ import annotations

import asyncio

import numpy as np

from vectors.api.core import shape
from vectors.engine.batches import Pending, unit_rows, unsort


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


def test_a_split_request_gets_its_normalised_rows_and_token_total_from_each_batch():
    loop = asyncio.new_event_loop()
    item = Pending(["a", "b", "c"], [1, 1, 1], loop.create_future(), enqueued_at=1.0)
    item.fill(2, 3, np.array([[3.0]]), 1.0, 8, np.array([7]), unit=np.array([[1.0]], dtype=np.float32), token_total=7)
    unit = np.array([[1.0], [1.0]], dtype=np.float32)
    item.fill(0, 2, np.array([[1.0], [2.0]]), 1.0, 8, np.array([5, 6]), unit=unit, token_total=11)
    answer = item.future.result()
    assert answer.unit_rows.tolist() == [[1.0], [1.0], [1.0]] and answer.token_total == 18
    loop.close()


def test_a_request_with_rows_from_a_batch_that_did_not_normalise_them_gets_no_normalised_rows():
    loop = asyncio.new_event_loop()
    item = Pending(["a", "b"], [1, 1], loop.create_future(), enqueued_at=1.0)
    item.fill(0, 1, np.array([[3.0]]), 1.0, 8, None, unit=np.array([[1.0]], dtype=np.float32))
    item.fill(1, 2, np.array([[4.0]]), 1.0, 8, None)
    answer = item.future.result()
    assert answer.unit_rows is None and answer.token_total is None and answer.tokens is None
    loop.close()


def test_a_batch_normalises_its_rows_exactly_as_each_request_would_have():
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(37, 384)).astype(np.float32)
    rows[5] = 0.0  # a zero row stays zero, not NaN
    batch = unit_rows(rows)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    for index in range(len(rows)):
        alone = shape(rows[index : index + 1], normalize=True, dimensions=None)
        assert np.array_equal(batch[index : index + 1], alone), index
    assert not batch[5].any()
