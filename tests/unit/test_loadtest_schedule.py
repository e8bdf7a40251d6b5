"""The schedules on a virtual clock: fixed arrival times in the open loop, N in flight in the closed loop."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from vectors.loadtest.client import Reply
from vectors.loadtest.schedule import Window, arrival_time, closed_loop, open_loop


class VirtualClock:
    """Time that stands still while any task can run, and jumps to the next sleeper when all wait."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start
        self._sleepers: list = []
        self._order = itertools.count()
        self.stall: dict[float, float] = {}  # deadline -> extra seconds the sleep overshoots

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        deadline += self.stall.pop(deadline, 0.0)
        if deadline <= self.t:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    async def run(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        while not task.done():
            for _ in range(50):
                await asyncio.sleep(0)
            if self._sleepers and not task.done():
                deadline, _, future = heapq.heappop(self._sleepers)
                self.t = max(self.t, deadline)
                future.set_result(None)
        return task.result()


def server(clock: VirtualClock, seconds: float, log: list | None = None):
    """A fake endpoint that takes `seconds` of virtual time per request."""

    async def call(texts):
        if log is not None:
            log.append(clock.now())
        await clock.sleep_until(clock.now() + seconds)
        return Reply(200)

    return call


def texts():
    return ["a sentence"]


async def test_open_loop_sends_at_fixed_arrival_times_however_slow_the_answers():
    clock = VirtualClock()
    samples, sent = [], []
    window = Window(clock.now(), warmup_s=0.0, duration_s=1.0)
    await clock.run(open_loop(server(clock, 0.5, sent), texts, samples.append, 100.0, window, clock))
    assert len(samples) == 100
    assert sent == pytest.approx([100.0 + i / 100 for i in range(100)])
    assert sorted(s.scheduled_s for s in samples) == pytest.approx([100.0 + i / 100 for i in range(100)])
    assert all(s.latency_s == pytest.approx(0.5) for s in samples)


async def test_open_loop_counts_latency_from_the_scheduled_time_when_sending_stalls():
    clock = VirtualClock()
    window = Window(clock.now(), warmup_s=0.0, duration_s=1.0)
    clock.stall[arrival_time(window, 10.0, 3)] = 0.35  # the sender wakes 350 ms late for request 3
    samples = []
    await clock.run(open_loop(server(clock, 0.01), texts, samples.append, 10.0, window, clock))
    by_due = {round(s.scheduled_s - window.start_s, 3): s for s in samples}
    assert len(samples) == 10
    # Requests 3..6 were due during the stall: each went out late and its wait counts.
    assert by_due[0.3].latency_s == pytest.approx(0.36)
    assert by_due[0.4].latency_s == pytest.approx(0.26)
    assert by_due[0.6].latency_s == pytest.approx(0.06)
    assert by_due[0.7].latency_s == pytest.approx(0.01)
    assert by_due[0.4].sent_s == pytest.approx(window.start_s + 0.65)


async def test_open_loop_with_a_request_budget_sends_that_many_after_the_warmup():
    clock = VirtualClock()
    window = Window(clock.now(), warmup_s=0.5, requests=7)
    samples = []
    await clock.run(open_loop(server(clock, 0.2), texts, samples.append, 20.0, window, clock))
    measured = [s for s in samples if s.scheduled_s >= window.measure_from]
    assert len(samples) == 10 + 7
    assert len(measured) == 7


async def test_closed_loop_keeps_n_requests_in_flight_until_the_end():
    clock = VirtualClock()
    window = Window(clock.now(), warmup_s=0.0, duration_s=1.0)
    samples = []
    await clock.run(closed_loop(server(clock, 0.125), texts, samples.append, 4, window, clock))
    assert len(samples) == 4 * 8
    assert all(s.latency_s == pytest.approx(0.125) for s in samples)
    assert max(s.sent_s for s in samples) < window.measure_until


async def test_closed_loop_slows_its_sends_down_to_the_pace_of_the_answers():
    clock = VirtualClock()
    window = Window(clock.now(), warmup_s=0.0, duration_s=2.0)
    samples = []
    await clock.run(closed_loop(server(clock, 0.5), texts, samples.append, 2, window, clock))
    assert len(samples) == 2 * 4  # unlike the open loop, slow answers mean fewer requests


async def test_closed_loop_with_a_request_budget_sends_exactly_that_many_measured_requests():
    clock = VirtualClock()
    window = Window(clock.now(), warmup_s=0.25, requests=9)
    samples = []
    await clock.run(closed_loop(server(clock, 0.1), texts, samples.append, 4, window, clock))
    assert len([s for s in samples if s.scheduled_s >= window.measure_from]) == 9


async def test_each_request_takes_the_next_texts_from_the_source():
    clock = VirtualClock()
    window = Window(clock.now(), warmup_s=0.0, requests=3)
    seen, counter = [], itertools.count()

    async def call(batch):
        seen.append(batch)
        return Reply(200)

    await clock.run(open_loop(call, lambda: [f"t{next(counter)}"] * 2, lambda s: None, 10.0, window, clock))
    assert seen == [["t0", "t0"], ["t1", "t1"], ["t2", "t2"]]


def test_a_window_needs_exactly_one_of_duration_and_requests():
    with pytest.raises(ValueError):
        Window(0.0, 0.0)
    with pytest.raises(ValueError):
        Window(0.0, 0.0, duration_s=1.0, requests=5)
    assert Window(5.0, 2.0, duration_s=10.0).measure_until == 17.0
