"""The micro-batcher with several lanes: fake wide and narrow encoders that log every call and its thread."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pytest

from tests.unit.test_batcher import expected
from vectors.engine.batcher import MicroBatcher
from vectors.engine.config import BatcherConfig
from vectors.engine.errors import EncodeFailed, EngineStopped, EngineStuck

LANE0, LANE1 = "lane0_0", "lane1_0"


@dataclass
class Call:
    kind: str  # "wide" or "narrow"
    thread: str
    texts: list[str]
    ended: bool = False


class CallLog:
    """Every model call of both fakes in start order; how many ran at once; whether a wide call ever had company."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.events: list[tuple[str, int]] = []  # ("start" | "end", call index) in the order they happened
        self.active = 0
        self.most = 0
        self.wide_had_company = False
        self.two_at_once = threading.Event()
        self.fakes: list[Fake] = []

    def fake(self, kind: str, **options) -> Fake:
        fake = Fake(kind, self, **options)
        self.fakes.append(fake)
        return fake

    def begin(self, kind: str, texts) -> int:
        with self.lock:
            index = len(self.calls)
            running = [c for c in self.calls if not c.ended]
            if (kind == "wide" and running) or any(c.kind == "wide" for c in running):
                self.wide_had_company = True
            self.calls.append(Call(kind, threading.current_thread().name, list(texts)))
            self.events.append(("start", index))
            self.active += 1
            self.most = max(self.most, self.active)
            if self.active >= 2:
                self.two_at_once.set()
            return index

    def end(self, index: int) -> None:
        with self.lock:
            self.calls[index].ended = True
            self.events.append(("end", index))
            self.active -= 1

    def release_all(self) -> None:
        for fake in self.fakes:
            for gate in fake.gates.values():
                gate.set()

    def sizes(self, kind: str | None = None) -> list[int]:
        return [len(c.texts) for c in self.calls if kind is None or c.kind == kind]


class Fake:
    """One encode function; rows derive from the text. Can be slowed, poisoned, held per lane thread,
    or told to wait (up to 2 s) for a second call to be running at the same time."""

    def __init__(
        self, kind: str, log: CallLog, delay_s: float = 0.0, poison: str | None = None, meet: bool = False
    ) -> None:
        self.kind = kind
        self.log = log
        self.delay_s = delay_s
        self.poison = poison
        self.meet = meet
        self.gates: dict[str, threading.Event] = {}  # by lane thread, or by the text of a one-text call
        self.entered = {LANE0: threading.Event(), LANE1: threading.Event()}

    def hold(self, *threads: str) -> None:
        for thread in threads:
            self.gates[thread] = threading.Event()

    def hold_alone(self, text: str) -> None:
        """Hold a call that encodes `text` alone (as the isolation of a failed batch does)."""
        self.gates[f"alone:{text}"] = threading.Event()

    def release(self, *threads: str) -> None:
        for thread in threads:
            self.gates[thread].set()

    def __call__(self, texts):
        index = self.log.begin(self.kind, texts)
        name = threading.current_thread().name
        try:
            self.entered.setdefault(name, threading.Event()).set()
            if self.meet:
                self.log.two_at_once.wait(2)
            for key in (name, f"alone:{texts[0]}" if len(texts) == 1 else None):
                gate = self.gates.get(key)
                if gate is not None:
                    self.entered.setdefault(key, threading.Event()).set()
                    gate.wait(10)
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.poison is not None and self.poison in texts:
                raise ValueError("poisoned input")
            return np.array([expected(t) for t in texts], dtype=np.float32)
        finally:
            self.log.end(index)


@pytest.fixture
def lanes():
    pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lane{i}") for i in range(2)]
    yield pools
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def log(lanes):
    calls = CallLog()
    yield calls
    calls.release_all()  # before the lanes shut down: no encode thread is left waiting at a gate


def make(lanes, wide: Fake, narrow: Fake, **config) -> MicroBatcher:
    return MicroBatcher(wide, BatcherConfig(**config), lanes, narrow_encode=narrow)


async def until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def entered(fake: Fake, thread: str) -> None:
    await until(fake.entered[thread].is_set)


def submit_all(batcher: MicroBatcher, texts: list[str]) -> list[asyncio.Future]:
    return [asyncio.ensure_future(batcher.submit([t], [3])) for t in texts]


async def both_lanes_held(lanes, log, texts: list[str], **config) -> tuple[MicroBatcher, Fake, list[asyncio.Future]]:
    """A batcher whose two narrow calls on `texts` have both started and are held at their gates."""
    narrow = log.fake("narrow")
    narrow.hold(LANE0, LANE1)
    batcher = make(lanes, log.fake("wide"), narrow, **config)
    waiting = submit_all(batcher, texts)
    await entered(narrow, LANE0)
    await entered(narrow, LANE1)
    return batcher, narrow, waiting


# -- two batches at once ---------------------------------------------------------------------


async def test_two_lanes_run_two_batches_at_once_never_more_and_every_request_gets_its_rows(lanes, log):
    wide = log.fake("wide", delay_s=0.005)
    narrow = log.fake("narrow", delay_s=0.005, meet=True)
    batcher = make(lanes, wide, narrow, max_batch_size=16)
    requests = []
    for i in range(150):
        size = 1 if i % 5 else 3  # some requests span several texts and may span two batches
        requests.append([f"request {i} text {j} " + "y" * ((i + j) % 11) for j in range(size)])
    for wave in (requests[:100], requests[100:]):
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(texts, [3 + len(t) % 5 for t in texts]) for texts in wave)), 20
        )
        for texts, result in zip(wave, results, strict=True):
            assert result.rows.tolist() == [expected(t) for t in texts]
    assert sum(log.sizes()) == sum(len(texts) for texts in requests)
    assert max(log.sizes()) <= 16
    assert log.most == 2, "two batches never ran at the same time"
    assert {c.thread for c in log.calls if c.kind == "narrow"} == {LANE0, LANE1}
    assert not log.wide_had_company
    assert batcher.queued_inputs == 0 and batcher.counters.failed == 0


# -- wide when alone ------------------------------------------------------------------------


async def test_a_lone_request_runs_wide_on_lane_zero_and_nothing_starts_until_it_ends(lanes, log):
    wide = log.fake("wide")
    narrow = log.fake("narrow")
    wide.hold(LANE0)
    batcher = make(lanes, wide, narrow)
    lone = asyncio.ensure_future(batcher.submit(["alone"], [3]))
    await entered(wide, LANE0)
    assert [(c.kind, c.thread, c.texts) for c in log.calls] == [("wide", LANE0, ["alone"])]
    # While the wide call runs, lane 1 is idle but must not be used: not for one request, not for a burst.
    second = asyncio.ensure_future(batcher.submit(["second"], [3]))
    burst = submit_all(batcher, [f"burst {i}" for i in range(10)])
    await asyncio.sleep(0.1)
    assert len(log.calls) == 1, "a batch started while the wide call was running"
    assert batcher.queued_inputs == 11
    wide.release(LANE0)
    results = await asyncio.wait_for(asyncio.gather(lone, second, *burst), 5)
    assert [r.rows.tolist()[0] for r in results] == [
        expected(t) for t in ["alone", "second", *[f"burst {i}" for i in range(10)]]
    ]
    assert log.events[:2] == [("start", 0), ("end", 0)], "a call started before the wide call ended"
    # The 11 texts found both lanes idle (>= split_min_inputs): shared by the two lanes, narrow.
    assert [c.kind for c in log.calls[1:]] == ["narrow", "narrow"]
    assert {c.thread for c in log.calls[1:]} == {LANE0, LANE1}
    assert sorted(log.sizes()[1:]) == [5, 6]
    assert not log.wide_had_company


async def test_a_small_burst_found_with_every_lane_idle_runs_as_one_wide_call(lanes, log):
    batcher = make(lanes, log.fake("wide"), log.fake("narrow"), split_min_inputs=8)
    texts = [f"small {i}" for i in range(7)]
    results = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, texts)), 5)
    assert [r.rows.tolist() for r in results] == [[expected(t)] for t in texts]
    assert [(c.kind, c.thread, len(c.texts)) for c in log.calls] == [("wide", LANE0, 7)]


# -- splitting a burst ----------------------------------------------------------------------


async def test_a_burst_found_with_both_lanes_idle_is_shared_in_halves(lanes, log):
    narrow = log.fake("narrow", meet=True)
    batcher = make(lanes, log.fake("wide"), narrow, split_min_inputs=8)
    texts = [f"burst text {i}" for i in range(20)]
    results = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, texts)), 5)
    assert [r.rows.tolist() for r in results] == [[expected(t)] for t in texts]
    assert [c.kind for c in log.calls] == ["narrow", "narrow"]
    assert sorted(log.sizes()) == [10, 10]
    assert {c.thread for c in log.calls} == {LANE0, LANE1}
    assert log.most == 2


async def test_one_large_request_found_with_both_lanes_idle_is_split_and_reassembled(lanes, log):
    narrow = log.fake("narrow", meet=True)
    batcher = make(lanes, log.fake("wide"), narrow, split_min_inputs=8)
    texts = [f"part {i} " + "z" * (i % 4) for i in range(21)]
    result = await asyncio.wait_for(batcher.submit(texts, [3 + i % 4 for i in range(21)]), 5)
    assert result.rows.tolist() == [expected(t) for t in texts]
    assert sorted(log.sizes("narrow")) == [10, 11]
    assert {c.thread for c in log.calls} == {LANE0, LANE1}


# -- failures -------------------------------------------------------------------------------


async def test_a_poisoned_text_fails_only_its_request_on_its_own_lane_and_frees_the_lanes(lanes, log):
    wide = log.fake("wide", poison="POISON")
    narrow = log.fake("narrow", delay_s=0.005, poison="POISON", meet=True)
    batcher = make(lanes, wide, narrow)
    texts = [f"fine {i}" for i in range(20)]
    texts[13] = "POISON"
    results = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, texts), return_exceptions=True), 10)
    for text, result in zip(texts, results, strict=True):
        if text == "POISON":
            assert isinstance(result, EncodeFailed)
        else:
            assert not isinstance(result, BaseException), result
            assert result.rows.tolist() == [expected(text)]
    assert batcher.counters.failed == 1
    failed = next(c for c in log.calls if "POISON" in c.texts and len(c.texts) > 1)
    reruns = [c for c in log.calls if len(c.texts) == 1]
    assert sorted(t for c in reruns for t in c.texts) == sorted(failed.texts), "each request of the batch re-runs alone"
    assert {(c.kind, c.thread) for c in reruns} == {(failed.kind, failed.thread)}, "isolation left its lane"
    # Every lane was released: a lone request runs wide (needs both lanes idle), a burst uses both lanes.
    before = len(log.calls)
    after = await asyncio.wait_for(batcher.submit(["after"], [3]), 5)
    assert after.rows.tolist() == [expected("after")]
    assert [(c.kind, c.thread) for c in log.calls[before:]] == [("wide", LANE0)]
    before = len(log.calls)
    burst = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, [f"again {i}" for i in range(20)])), 5)
    assert [r.rows.tolist()[0] for r in burst] == [expected(f"again {i}") for i in range(20)]
    assert {c.thread for c in log.calls[before:]} == {LANE0, LANE1}


async def test_a_finished_batch_frees_its_lane_starts_the_next_batch_and_answers_in_one_callback(lanes, log):
    batcher = make(lanes, log.fake("wide"), log.fake("narrow", delay_s=0.002, meet=True), max_batch_size=8)
    seen = []
    batch_done = batcher._batch_done

    def watched(lane, wide, batch, done, follow=None):
        before = batcher.queued_inputs
        batch_done(lane, wide, batch, done, follow)
        answered = all(piece.pending.future.done() for piece in batch.slices)
        seen.append((before, batcher.queued_inputs, answered, follow is not None))

    batcher._batch_done = watched
    texts = [f"t{i}" for i in range(80)]
    results = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, texts)), 10)
    assert [r.rows.tolist() for r in results] == [[expected(t)] for t in texts]
    assert any(before > 0 for before, *_ in seen)
    for before, after, answered, followed in seen:
        assert answered, "the waiters of a finished batch were not answered in its completion callback"
        if before > 0 and not followed:
            assert after < before, "the completion callback did not start the next batch"


async def test_a_lane_takes_its_next_batch_itself_while_the_event_loop_is_busy(lanes, log):
    narrow = log.fake("narrow", delay_s=0.02)
    batcher = make(lanes, log.fake("wide"), narrow, max_batch_size=4)
    texts = [f"t{i}" for i in range(40)]
    waiting = submit_all(batcher, texts)
    await until(lambda: log.active == 2)  # both lanes run their first batch of 4
    started = len(log.calls)
    time.sleep(0.25)  # the loop answers nothing for 12 batch lengths, as under a burst of responses
    during = log.calls[started:]
    assert len(during) >= 4, "the lanes waited for the event loop to hand them their next batches"
    assert {c.thread for c in during} == {LANE0, LANE1} and all(len(c.texts) <= 4 for c in during)
    results = await asyncio.wait_for(asyncio.gather(*waiting), 10)
    assert [r.rows.tolist() for r in results] == [[expected(t)] for t in texts]
    assert sorted(t for c in log.calls for t in c.texts) == sorted(texts)  # each text encoded once
    assert batcher.queued_inputs == 0 and not any(batcher._busy)


async def test_a_batch_taken_for_a_lane_that_has_shut_down_fails_its_waiters_instead_of_losing_them(lanes, log):
    batcher, narrow, waiting = await both_lanes_held(lanes, log, [f"t{i}" for i in range(20)], max_batch_size=4)
    for pool in lanes:
        pool.shutdown(wait=False)  # the running calls finish; nothing new can start on these lanes
    narrow.release(LANE0, LANE1)
    await until(lambda: sum(w.done() for w in waiting) >= 16)  # 2 batches answered, 2 taken and failed
    assert [w.result().rows.tolist() for w in waiting[:8]] == [[expected(f"t{i}")] for i in range(8)]
    assert all(isinstance(w.exception(), EngineStopped) for w in waiting[8:16])
    await batcher.close()
    assert all(isinstance(w.exception(), EngineStopped) for w in waiting[16:])


# -- drain and close ------------------------------------------------------------------------


async def test_drain_waits_for_the_batches_on_both_lanes(lanes, log):
    batcher, narrow, waiting = await both_lanes_held(lanes, log, [f"t{i}" for i in range(20)])
    draining = asyncio.ensure_future(batcher.drain())
    await asyncio.sleep(0.05)
    assert not draining.done()
    narrow.release(LANE0)
    await until(lambda: sum(w.done() for w in waiting) == 10 and log.active == 1)
    await asyncio.sleep(0.05)
    assert not draining.done(), "drain returned while lane 1 was still encoding"
    narrow.release(LANE1)
    await asyncio.wait_for(draining, 5)
    assert all(w.done() and not w.exception() for w in waiting)
    assert [w.result().rows.tolist() for w in waiting] == [[expected(f"t{i}")] for i in range(20)]
    with pytest.raises(EngineStopped):
        await batcher.submit(["after drain"], [2])


async def test_close_fails_running_and_queued_waiters_and_leaves_no_task(lanes, log):
    batcher, narrow, running = await both_lanes_held(lanes, log, [f"running {i}" for i in range(20)])
    queued = submit_all(batcher, [f"queued {i}" for i in range(5)])
    await asyncio.sleep(0.02)
    assert batcher.queued_inputs == 5
    errors = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    await asyncio.wait_for(batcher.close(), 5)
    results = await asyncio.wait_for(asyncio.gather(*running, *queued, return_exceptions=True), 5)
    assert all(isinstance(r, EngineStopped) for r in results), results
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    with pytest.raises(EngineStopped):
        await batcher.submit(["after close"], [2])
    # The calls still running in the lanes end later; their completions must not raise in the loop.
    narrow.release(LANE0, LANE1)
    await until(lambda: log.active == 0)
    await asyncio.sleep(0.05)
    assert errors == []
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_close_cancels_the_inference_deadlines_of_the_calls_still_running(lanes, log):
    batcher, narrow, waiting = await both_lanes_held(lanes, log, [f"t{i}" for i in range(20)])
    deadlines = list(batcher._deadlines.values())
    assert len(deadlines) == 2
    await asyncio.wait_for(batcher.close(), 5)
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert all(isinstance(r, EngineStopped) for r in results), results
    # Left scheduled, each would fire after the batcher is gone: log an error and turn readiness false.
    assert all(deadline.cancelled() for deadline in deadlines)
    assert batcher.healthy


async def test_close_answers_a_batch_a_lane_took_itself_just_before_and_schedules_no_deadline_for_it(lanes, log):
    batcher, narrow, waiting = await both_lanes_held(lanes, log, [f"t{i}" for i in range(20)], max_batch_size=4)
    assert batcher.queued_inputs == 12
    # The loop is held while lane 0's call ends: the lane takes t8-t11 itself (`_follow_on`) and starts
    # that call (held at a fresh gate), but the loop hears of it only after close() has failed every
    # waiter it knew of.
    ended = narrow.gates[LANE0]
    narrow.entered[LANE0].clear()
    narrow.hold(LANE0)
    ended.set()
    assert narrow.entered[LANE0].wait(5)
    await batcher.close()  # not wait_for: close() must run before the loop's callback of lane 0
    await asyncio.sleep(0)
    assert all(w.done() for w in waiting), [i for i, w in enumerate(waiting) if not w.done()]
    assert all(isinstance(w.exception(), EngineStopped) for w in waiting)
    assert not batcher._deadlines, "a deadline outlives the batcher"


async def test_close_during_the_isolation_of_a_failed_batch_cancels_it_and_leaves_no_task(lanes, log):
    narrow = log.fake("narrow", poison="POISON", meet=True)
    narrow.hold_alone("held")
    batcher = make(lanes, log.fake("wide"), narrow)
    texts = [f"t{i}" for i in range(20)]
    texts[3], texts[5] = "POISON", "held"  # both in the first half: one lane's batch fails and is isolated
    waiting = submit_all(batcher, texts)
    await until(lambda: "alone:held" in narrow.entered and narrow.entered["alone:held"].is_set())
    await until(lambda: all(w.done() for w in waiting[10:]))  # the other lane's batch
    errors = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    await asyncio.wait_for(batcher.close(), 5)
    assert isinstance(waiting[3].exception(), EncodeFailed)
    assert all(waiting[i].result().rows.tolist() == [expected(texts[i])] for i in (0, 1, 2, 4, *range(10, 20)))
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and t not in waiting] == []
    narrow.gates["alone:held"].set()
    await until(lambda: log.active == 0)
    await asyncio.sleep(0.05)
    assert errors == []
    assert ["t6"] not in [c.texts for c in log.calls], "the isolation went on after close"
    # Every waiter has its answer: the held request and those not yet re-run were failed, not forgotten.
    assert all(w.done() for w in waiting)
    assert all(isinstance(waiting[i].exception(), EngineStopped) for i in range(5, 10))


# -- the inference deadline -----------------------------------------------------------------


async def test_an_overdue_wide_call_makes_the_engine_stuck_until_it_returns(lanes, log):
    wide = log.fake("wide")
    wide.hold(LANE0)
    batcher = make(lanes, wide, log.fake("narrow"), inference_timeout_ms=150)
    with pytest.raises(EngineStuck):
        await asyncio.wait_for(batcher.submit(["hangs"], [2]), 5)
    assert not batcher.healthy
    with pytest.raises(EngineStuck):
        await batcher.submit(["refused while stuck"], [2])
    assert len(log.calls) == 1
    wide.release(LANE0)
    await until(lambda: batcher.healthy)
    result = await asyncio.wait_for(batcher.submit(["after recovery"], [2]), 5)
    assert result.rows.tolist() == [expected("after recovery")]
    burst = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, [f"b{i}" for i in range(20)])), 5)
    assert [r.rows.tolist()[0] for r in burst] == [expected(f"b{i}") for i in range(20)]


async def test_calls_that_end_in_time_on_both_lanes_never_make_the_engine_stuck(lanes, log):
    batcher = make(lanes, log.fake("wide"), log.fake("narrow", meet=True), inference_timeout_ms=200)
    burst = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, [f"b{i}" for i in range(20)])), 5)
    assert [r.rows.tolist()[0] for r in burst] == [expected(f"b{i}") for i in range(20)]
    assert {c.thread for c in log.calls} == {LANE0, LANE1}
    await asyncio.sleep(0.35)  # past every deadline those calls had
    assert batcher.healthy
    after = await asyncio.wait_for(batcher.submit(["after"], [2]), 5)
    assert after.rows.tolist() == [expected("after")]


async def test_an_overdue_call_on_one_lane_fails_its_waiters_while_the_other_lane_answered_in_time(lanes, log):
    texts = [f"t{i}" for i in range(20)]
    batcher, narrow, waiting = await both_lanes_held(lanes, log, texts, inference_timeout_ms=300)
    narrow.release(LANE0)
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    lane0 = next(c.texts for c in log.calls if c.thread == LANE0)
    for text, result in zip(texts, results, strict=True):
        if text in lane0:
            assert result.rows.tolist() == [expected(text)]
        else:
            assert isinstance(result, EngineStuck), result
    assert not batcher.healthy
    narrow.release(LANE1)
    await until(lambda: batcher.healthy and log.active == 0)


async def test_an_overdue_call_on_one_lane_leaves_the_other_lanes_call_and_the_queue_to_be_served(lanes, log):
    narrow = log.fake("narrow")
    narrow.hold(LANE0, LANE1)
    batcher = make(lanes, log.fake("wide"), narrow, split_min_inputs=1)  # a lone request runs narrow
    on_lane0 = asyncio.ensure_future(batcher.submit(["on lane 0"], [3]))
    await entered(narrow, LANE0)
    # Only the call started next, on lane 1, gets a deadline short enough to pass during the test.
    batcher.config = replace(batcher.config, inference_timeout_ms=50)
    on_lane1 = asyncio.ensure_future(batcher.submit(["on lane 1"], [3]))
    await entered(narrow, LANE1)
    queued = asyncio.ensure_future(batcher.submit(["queued"], [3]))
    with pytest.raises(EngineStuck):
        await asyncio.wait_for(on_lane1, 5)
    await asyncio.sleep(0)
    assert not on_lane0.done() and not queued.done(), "lane 1's deadline failed waiters it was not running"
    assert batcher.queued_inputs == 1
    narrow.release(LANE0)  # lane 0 answers its own call, then runs the queued request
    results = await asyncio.wait_for(asyncio.gather(on_lane0, queued), 5)
    assert [r.rows.tolist() for r in results] == [[expected("on lane 0")], [expected("queued")]]
    assert [c.thread for c in log.calls if c.texts == ["queued"]] == [LANE0]
    narrow.release(LANE1)
    await until(lambda: batcher.healthy and log.active == 0)


async def test_overdue_parallel_calls_fail_their_waiters_and_the_lanes_recover(lanes, log):
    narrow = log.fake("narrow")
    narrow.hold(LANE0, LANE1)
    batcher = make(lanes, log.fake("wide"), narrow, inference_timeout_ms=150)
    waiting = submit_all(batcher, [f"t{i}" for i in range(20)])
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert all(isinstance(r, EngineStuck) for r in results), results
    assert not batcher.healthy
    assert sorted(log.sizes("narrow")) == [10, 10]
    narrow.release(LANE0, LANE1)
    await until(lambda: batcher.healthy and log.active == 0)
    before = len(log.calls)
    burst = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, [f"b{i}" for i in range(20)])), 5)
    assert [r.rows.tolist()[0] for r in burst] == [expected(f"b{i}") for i in range(20)]
    assert {c.thread for c in log.calls[before:]} == {LANE0, LANE1}


async def test_engine_stays_unhealthy_while_another_lane_is_still_past_its_deadline(lanes, log):
    narrow = log.fake("narrow")
    narrow.hold(LANE0, LANE1)
    batcher = make(lanes, log.fake("wide"), narrow, inference_timeout_ms=150)
    texts = [f"t{i}" for i in range(20)]
    results = await asyncio.wait_for(asyncio.gather(*submit_all(batcher, texts), return_exceptions=True), 5)
    assert all(isinstance(r, EngineStuck) for r in results)
    assert not batcher.healthy
    narrow.release(LANE1)  # lane 0's call is still held, past its deadline
    await until(lambda: log.active == 1)
    await asyncio.sleep(0.05)
    assert not batcher.healthy, "healthy again while lane 0 is still past the inference deadline"
    with pytest.raises(EngineStuck):
        await batcher.submit(["refused while lane 0 is stuck"], [2])
    narrow.release(LANE0)
    await until(lambda: batcher.healthy)
    result = await asyncio.wait_for(batcher.submit(["after recovery"], [2]), 5)
    assert result.rows.tolist() == [expected("after recovery")]


async def test_a_failing_follow_on_leaves_the_next_batch_to_the_loop(lanes):
    def encode(texts):
        time.sleep(0.005)
        return np.array([expected(t) for t in texts], dtype=np.float32)

    batcher = MicroBatcher(encode, BatcherConfig(max_batch_size=4, split_min_inputs=2), lanes, narrow_encode=encode)
    tried = []

    def broken_follow_on(lane):
        tried.append(lane)
        raise RuntimeError("bug in the encode thread's batch taking")

    batcher._follow_on = broken_follow_on  # type: ignore[method-assign]
    texts = [f"t{i}" for i in range(40)]
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit([t], [2]) for t in texts)), 5)
    assert [r.rows.tolist() for r in results] == [[expected(t)] for t in texts]
    assert tried  # the encode threads did try, and the loop took over each time
