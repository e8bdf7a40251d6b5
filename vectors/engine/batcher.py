"""The micro-batcher: one asyncio task owns the queue and feeds the encode lanes with batches."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .batches import (
    Batch,
    BatcherCounters,
    BatchStats,
    Embedded,
    EncodeFn,
    Pending,
    Slice,
    rows_and_counts,
    unit_rows,
    unsort,
)
from .config import BatcherConfig
from .errors import EncodeFailed, EngineStopped, EngineStuck, QueueFull, QueueTimeout
from .workqueue import WorkQueue

logger = logging.getLogger(__name__)


class MicroBatcher:
    """Gather concurrent requests into batches, encode each batch once, answer each request.

    One task owns the queue: it takes waiting texts in arrival order up to `max_batch_size`
    texts and `max_batch_tokens` padded tokens, orders the batch by length, and hands it to an
    encode thread. While that call runs, new requests queue up and form the next batch; under
    load the lane takes that next batch itself as its call ends (`_follow_on`, the one other
    hand on the queue, under a lock). Created inside a running event loop; bound to that loop.

    With several executors (lanes), up to that many batches run at once, each through
    `narrow_encode` (fewer threads per call); a batch that finds every lane idle and little
    else waiting runs alone on lane 0 through `encode` (all threads) and holds every lane until
    it ends. Under load the lanes overlap and no call waits on a parallel region whose other
    thread the event loop has pre-empted; when idle a lone request still gets every core.
    """

    clock = staticmethod(time.perf_counter)

    def __init__(
        self,
        encode: EncodeFn,
        config: BatcherConfig,
        executor: ThreadPoolExecutor | Sequence[ThreadPoolExecutor],
        on_batch: Callable[[BatchStats], None] | None = None,
        narrow_encode: EncodeFn | None = None,
    ) -> None:
        self.config = config
        executors = [executor] if isinstance(executor, ThreadPoolExecutor) else list(executor)
        if not executors:
            raise ValueError("at least one executor is needed")
        narrow = narrow_encode or encode
        # Per lane: (narrow call, executor), (wide call, executor); only lane 0 runs wide calls.
        self._calls = [((narrow, ex), (encode, executors[0])) for ex in executors]
        self._deadlines: dict[int, asyncio.TimerHandle] = {}
        self._busy = [False] * len(executors)
        self._wide_running = False
        self._batch_tasks: set[asyncio.Task] = set()
        self._on_batch = on_batch
        # The loop's, except that a lane whose batch just ended takes its next batch itself (`_follow_on`).
        self._queue = WorkQueue(config.max_batch_tokens)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._inflight: dict[int, list[Slice]] = {}
        self._under_load = False
        self._stuck_lanes: set[int] = set()  # lanes whose call has run past the inference deadline
        self._accepting = True
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.counters = BatcherCounters()

    # -- public surface -------------------------------------------------------------------

    @property
    def queued_inputs(self) -> int:
        """Texts waiting for a batch (not yet handed to the model)."""
        return self._queue.queued_inputs

    @property
    def healthy(self) -> bool:
        """False while a model call has run past the inference deadline."""
        return not self._stuck_lanes

    async def submit(self, texts: Sequence[str], tokens: Sequence[int]) -> Embedded:
        """Queue `texts` (with their token counts) and return their embeddings in order.

        Raises:
            QueueFull: the queue already holds `max_queue_inputs` texts (answer 429).
            QueueTimeout: the batch did not start within `queue_timeout_ms` (answer 503).
            EngineStuck: the model call ran past `inference_timeout_ms` (answer 503).
            EngineStopped: the batcher is draining or stopped (answer 503).
            EncodeFailed: the model raised on these inputs (answer 500).
        """
        if not texts:
            raise ValueError("submit needs at least one text")  # a batch could never take it: _run would spin
        if not self._accepting:
            raise EngineStopped("the service is draining and takes no new work")
        if self._stuck_lanes:
            raise EngineStuck("the model has not answered within the inference deadline")
        limit = self.config.max_queue_inputs
        queued = self._queue.queued_inputs
        if queued and queued + len(texts) > limit:
            self.counters.rejected_full += 1
            raise QueueFull(queued, limit)
        self._ensure_running()
        loop = asyncio.get_running_loop()
        pending = Pending(texts, tokens, loop.create_future(), self.clock())
        self._queue.put(pending)
        self._idle.clear()
        self.counters.requests += 1
        self.counters.texts += len(texts)
        self._wake.set()
        timer = loop.call_later(self.config.queue_timeout_ms / 1000, self._expire, pending)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._queue.drop(pending)
            self.counters.cancelled += 1
            raise
        finally:
            timer.cancel()

    def stop_accepting(self) -> None:
        """Refuse new work from now on (EngineStopped); queued work still runs."""
        self._accepting = False

    async def drain(self) -> None:
        """Stop accepting and wait until every queued and running batch has finished."""
        self.stop_accepting()
        await self._idle.wait()

    def cancel(self) -> list[asyncio.Task]:
        """Stop without waiting (on the batcher's loop): waiters get EngineStopped, its tasks are cancelled.

        Returns the cancelled tasks; they end on the loop's next turns (`close` waits for them).
        """
        self.stop_accepting()
        self._closed = True
        # Fail every waiter first: a cancelled isolation task releases its lane, and with it the
        # record of the requests it had not re-run yet.
        self._fail_all(EngineStopped("the batcher was stopped"))
        tasks = [t for t in (self._task, *self._batch_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        self._cancel_deadlines()
        return tasks

    async def close(self) -> None:
        """Stop the batcher task and wait for it; any waiter left gets EngineStopped."""
        for task in self.cancel():
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _cancel_deadlines(self) -> None:
        # A call still running in a lane returns later or never; its waiters are answered, and its
        # deadline firing after the batcher is gone would only log an error and turn readiness false.
        for deadline in self._deadlines.values():
            deadline.cancel()
        self._deadlines.clear()

    # -- the queue-owning task ------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
            self._task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("a micro-batcher task died; failing its waiters", exc_info=exc)
            self._fail_all(EncodeFailed(f"internal batcher failure: {type(exc).__name__}"))

    async def _run(self) -> None:
        while True:
            if not self._queue or self._free_lane() is None:
                if not self._queue and not any(self._busy):
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._under_load and self._queue.queued_inputs < self.config.max_batch_size:
                await asyncio.sleep(self.config.max_wait_ms / 1000)
            self._dispatch()

    def _dispatch(self) -> None:
        """Start batches on idle lanes while texts wait; synchronous, so no loop turn is lost."""
        while self._queue:
            lane = self._free_lane()
            if lane is None:
                return
            free = self._busy.count(False)
            wide = free == len(self._busy) and (free == 1 or self._queue.queued_inputs < self.config.split_min_inputs)
            cap = self.config.max_batch_size
            if not wide and free > 1:
                cap = self._share(free)
            slices, texts, tokens = self._queue.take(cap, self.clock())
            if not slices:
                return
            self._start_batch(0 if wide else lane, wide, slices, texts, tokens)

    def _share(self, lanes: int) -> int:
        """A batch's cap when the queue is shared among `lanes` lanes about to start."""
        return max(1, min(self.config.max_batch_size, -(-self._queue.queued_inputs // lanes)))

    def _free_lane(self) -> int | None:
        if self._wide_running:
            return None
        for lane, busy in enumerate(self._busy):
            if not busy:
                return lane
        return None

    def _start_batch(self, lane: int, wide: bool, slices: list[Slice], texts: list[str], tokens: list[int]) -> None:
        self._busy[lane] = True
        self._wide_running = wide
        self._inflight[lane] = slices
        self._watch(lane, len(texts))
        batch = Batch(slices, texts, tokens, self.clock())
        try:
            self._submit(asyncio.get_running_loop(), lane, wide, batch)
        except RuntimeError:  # the lane's executor has shut down: the service is stopping
            self._call_ended(lane)
            self._free(lane, wide)
            self._abandon(batch)

    def _submit(self, loop: asyncio.AbstractEventLoop, lane: int, wide: bool, batch: Batch) -> None:
        """Run `batch` on the lane's thread; its end comes back to the loop as one `_batch_done` callback.

        Awaiting a task instead would cost several loop turns, each behind every response the loop is
        writing. And before the callback is even posted, the lane takes its next batch itself
        (`_follow_on`) and starts it: under load the loop is often busy for tens of ms answering the
        batch that just ended, and the lane would sit idle for all of it (8-9 % of each lane's time,
        measured at 100 connections on 2 cores).
        """

        def finished(done: Future) -> None:  # runs in the encode thread
            follow = None
            if not wide and done.exception() is None:
                try:
                    follow = self._follow_on(lane)
                except Exception:  # a bug here must not leave the lane marked busy for good
                    logger.exception("taking the next batch in the encode thread failed; the loop takes it")
            abandoned = None
            if follow is not None:
                try:
                    self._submit(loop, lane, wide, follow)
                except RuntimeError:  # the lane's executor has shut down: the service is stopping
                    follow, abandoned = None, follow
            try:
                loop.call_soon_threadsafe(self._batch_done, lane, wide, batch, done, follow)
                if abandoned is not None:
                    loop.call_soon_threadsafe(self._abandon, abandoned)
            except RuntimeError:
                pass  # the loop is closed; its waiters were failed when it stopped

        function, executor = self._calls[lane][wide]
        executor.submit(function, [batch.texts[i] for i in batch.order]).add_done_callback(finished)

    def _follow_on(self, lane: int) -> Batch | None:
        """In the lane's thread, as its batch ends: take the lane's next batch off the queue, if any waits.

        Only a narrow (per-lane) batch follows on, and only where batches do not wait to fill up
        (`max_wait_ms` 0, or already under load); the share of the queue is what `_dispatch` would give
        this lane with the other idle lanes. Everything else still goes through the loop.
        """
        if not self._queue.queued_inputs or (self.config.max_wait_ms > 0 and not self._under_load):
            return None
        idle = self._busy.count(False)
        cap = self._share(idle + 1) if idle else self.config.max_batch_size
        slices, texts, tokens = self._queue.take(cap, self.clock())
        if not slices:
            return None
        return Batch(slices, texts, tokens, self.clock())

    def _watch(self, lane: int, size: int) -> None:
        loop = asyncio.get_running_loop()
        self._deadlines[lane] = loop.call_later(self.config.inference_timeout_ms / 1000, self._overdue, lane, size)

    def _overdue(self, lane: int, size: int) -> None:
        self._stuck_lanes.add(lane)
        logger.error("model call on %d texts passed the inference deadline", size)
        # Only this lane's call is late: the other lanes go on answering their own calls and the queue.
        error = EngineStuck("the model has not answered within the inference deadline")
        self._fail_slices(self._inflight.get(lane, []), error)

    def _call_ended(self, lane: int) -> None:
        deadline = self._deadlines.pop(lane, None)
        if deadline is not None:
            deadline.cancel()
        # A call past its deadline has now returned: its lane is usable again.
        self._stuck_lanes.discard(lane)

    def _free(self, lane: int, wide: bool) -> None:
        """Mark `lane` idle, with nothing in flight on it."""
        self._inflight.pop(lane, None)
        self._busy[lane] = False
        if wide:
            self._wide_running = False

    def _release(self, lane: int, wide: bool) -> None:
        """Free `lane` and start what waits (or let the run task decide to wait for a fuller batch)."""
        self._free(lane, wide)
        if self.config.max_wait_ms > 0:
            self._wake.set()  # the run task decides whether to wait for a fuller batch
        else:
            self._dispatch()
        if not self._queue and not any(self._busy):
            self._idle.set()

    def _batch_done(self, lane: int, wide: bool, batch: Batch, done: Future, follow: Batch | None = None) -> None:
        self._call_ended(lane)
        if follow is not None:  # the lane already runs its next batch (`_follow_on`)
            self._inflight[lane] = follow.slices
            if self._closed:
                # Taken in the lane's thread before close() failed every waiter it knew of: these get its
                # answer too, and no deadline is scheduled to outlive the batcher.
                self._fail_slices(follow.slices, EngineStopped("the batcher was stopped"))
            else:
                self._watch(lane, len(follow.texts))
        exc = done.exception()
        if exc is not None:
            logger.warning("batch of %d texts failed (%s); isolating", len(batch.tokens), exc)
            task = asyncio.get_running_loop().create_task(self._isolate(lane, wide, batch.slices, batch.started))
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_ended)
            return
        if follow is None:
            self._release(lane, wide)
        size = len(batch.tokens)
        elapsed_ms = (self.clock() - batch.started) * 1000
        try:
            rows, counts = rows_and_counts(done.result())
            unsorted = unsort(rows, batch.order)
            # What each request would otherwise compute on its own, done once for the batch: the rows
            # normalised, and each request's token total.
            unit = unit_rows(unsorted)
            widths = [piece.stop - piece.start for piece in batch.slices]
            starts = np.cumsum([0, *widths[:-1]])
            totals: list[int | None] = [None] * len(widths)
            if counts is not None:
                counts = unsort(counts, batch.order)
                totals = np.add.reduceat(counts, starts).tolist()
            for piece, offset, width, total in zip(batch.slices, starts.tolist(), widths, totals, strict=True):
                part = None if counts is None else counts[offset : offset + width]
                window = slice(offset, offset + width)
                piece.pending.fill(
                    piece.start, piece.stop, unsorted[window], elapsed_ms, size, part, unit[window], total
                )
            self._record(size, len(batch.slices), elapsed_ms)
        except Exception as exc:  # noqa: BLE001 - rows that do not fit the texts, or a failing hook: fail, never hang
            logger.exception("could not deliver a batch of %d texts", size)
            self._fail_slices(batch.slices, EncodeFailed(f"internal batcher failure: {type(exc).__name__}"))

    def _abandon(self, batch: Batch) -> None:
        """Fail the waiters of a batch taken for a lane that could no longer run it."""
        self._fail_slices(batch.slices, EngineStopped("the encode lane has stopped"))

    def _batch_ended(self, task: asyncio.Task) -> None:
        self._batch_tasks.discard(task)
        self._task_ended(task)

    async def _isolate(self, lane: int, wide: bool, slices: list[Slice], started: float) -> None:
        """Re-run each request of a failed batch alone: only the culprits fail."""
        function, executor = self._calls[lane][wide]
        loop = asyncio.get_running_loop()
        try:
            for piece in slices:
                if piece.pending.future.done():
                    continue
                texts = list(piece.pending.texts[piece.start : piece.stop])
                self._watch(lane, len(texts))
                try:
                    rows, counts = rows_and_counts(await loop.run_in_executor(executor, function, texts))
                    if len(rows) != len(texts):
                        raise ValueError(f"{len(rows)} rows for {len(texts)} texts")
                    unit = unit_rows(rows)
                except Exception as exc:  # noqa: BLE001 - this request alone fails
                    self.counters.failed += 1
                    if not piece.pending.future.done():
                        piece.pending.future.set_exception(
                            EncodeFailed(f"the model failed on this input: {type(exc).__name__}")
                        )
                    self._queue.drop(piece.pending)  # the rest of a split request is not run either
                    continue
                finally:
                    self._call_ended(lane)
                elapsed_ms = (self.clock() - started) * 1000
                try:
                    self._record(len(texts), 1, elapsed_ms)
                    piece.pending.fill(piece.start, piece.stop, rows, elapsed_ms, len(texts), counts, unit)
                except Exception as exc:  # noqa: BLE001 - a failing hook: this request fails, as in _batch_done
                    logger.exception("could not deliver the rows of a request run alone")
                    self._fail_slices([piece], EncodeFailed(f"internal batcher failure: {type(exc).__name__}"))
        finally:
            self._release(lane, wide)

    def _record(self, size: int, requests: int, inference_ms: float) -> None:
        self.counters.batches += 1
        self.counters.sizes.append(size)
        if len(self.counters.sizes) > 4096:
            del self.counters.sizes[:2048]
        # Waiting for a fuller batch pays only while batches come out well filled (load);
        # an idle service never waits.
        self._under_load = self.config.max_wait_ms > 0 and size >= self.config.max_batch_size // 4
        if self._on_batch is not None:
            self._on_batch(BatchStats(size, requests, inference_ms))

    # -- leaving the queue ----------------------------------------------------------------

    def _expire(self, pending: Pending) -> None:
        if not self._queue.expire(pending):
            return
        self.counters.expired += 1
        pending.future.set_exception(
            QueueTimeout(f"waited {self.config.queue_timeout_ms:.0f} ms without reaching the model")
        )

    def _fail_slices(self, slices: list[Slice], error: Exception) -> None:
        """Fail the requests of `slices`; what is left of a split one is not run either."""
        for piece in slices:
            self._queue.drop(piece.pending)
            if not piece.pending.future.done():
                piece.pending.future.set_exception(error)

    def _fail_all(self, error: Exception) -> None:
        for piece in [piece for slices in self._inflight.values() for piece in slices]:
            if not piece.pending.future.done():
                piece.pending.future.set_exception(error)
        for pending in self._queue.clear():
            if not pending.future.done():
                pending.future.set_exception(error)
        self._idle.set()
