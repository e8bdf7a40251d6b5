"""The micro-batcher's queue: requests in arrival order, cut into batches by size and a token budget.

The event loop owns it, except that an encode lane whose batch just ended takes its next batch from it
itself (MicroBatcher._follow_on): one lock covers the queue, its count, and each request's taken and
started fields, and only this module takes it.
"""

from __future__ import annotations

import threading
from collections import deque

from .batches import Pending, Slice


class WorkQueue:
    """Requests waiting for the model, and how many of their texts no batch has taken yet."""

    def __init__(self, max_batch_tokens: int) -> None:
        self.max_batch_tokens = max_batch_tokens
        self._queue: deque[Pending] = deque()
        self._lock = threading.Lock()
        self._queued_inputs = 0

    @property
    def queued_inputs(self) -> int:
        """Texts that no batch has taken yet."""
        return self._queued_inputs

    def __bool__(self) -> bool:
        return bool(self._queue)

    def put(self, pending: Pending) -> None:
        """Queue a request behind the others."""
        with self._lock:
            self._queue.append(pending)
            self._queued_inputs += len(pending.texts)

    def take(self, cap: int, now: float) -> tuple[list[Slice], list[str], list[int]]:
        """Take the next batch: texts in arrival order, at most `cap` of them and `max_batch_tokens` padded."""
        slices: list[Slice] = []
        texts: list[str] = []
        tokens: list[int] = []
        longest = 0
        with self._lock:
            while self._queue and len(texts) < cap:
                pending = self._queue[0]
                if pending.dropped or pending.future.done():
                    self._unqueue(pending)  # (a no-op for a dropped one: its count went when it was dropped)
                    self._queue.popleft()
                    continue
                start = pending.taken
                stop = start
                while stop < len(pending.texts) and len(texts) < cap:
                    count = pending.tokens[stop]
                    wider = max(longest, count)
                    if texts and wider * (len(texts) + 1) > self.max_batch_tokens:
                        break
                    longest = wider
                    texts.append(pending.texts[stop])
                    tokens.append(count)
                    stop += 1
                if stop == start:
                    break
                if pending.started_at is None:
                    pending.started_at = now
                pending.taken = stop
                self._queued_inputs -= stop - start
                slices.append(Slice(pending, start, stop))
                if pending.waiting == 0:
                    self._queue.popleft()
                else:
                    break  # the token budget or size cap is reached inside this request
        return slices, texts, tokens

    def drop(self, pending: Pending) -> None:
        """Take what is left of `pending` off the queue; no batch takes it any more."""
        with self._lock:
            self._unqueue(pending)

    def expire(self, pending: Pending) -> bool:
        """Drop `pending` if no batch has started on it and it is unanswered; tell whether it was dropped."""
        with self._lock:
            if pending.future.done() or pending.started_at is not None:
                return False
            self._unqueue(pending)
        return True

    def clear(self) -> list[Pending]:
        """Empty the queue and return what it held."""
        with self._lock:
            queued = list(self._queue)
            for pending in queued:
                self._unqueue(pending)
            self._queue.clear()
            self._queued_inputs = 0
        return queued

    def _unqueue(self, pending: Pending) -> None:
        # (hold `_lock`)
        if not pending.dropped:
            pending.dropped = True
            self._queued_inputs -= pending.waiting
            pending.taken = len(pending.texts)
