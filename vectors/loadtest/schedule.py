"""When requests are sent: a closed loop of N clients, or an open loop of fixed arrival times.

In the open loop a request's latency counts from its *scheduled* send time, so a stalled
server (or a stalled client) cannot hide tail latency by delaying the sends it would have
answered slowly (coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .client import Reply

Call = Callable[[Sequence[str]], Awaitable[Reply]]
NextTexts = Callable[[], Sequence[str]]


class Clock(Protocol):
    """Seconds on a monotonic clock, and a way to wait for a point on it (tests inject a virtual one)."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock:
    """The real clock: time.perf_counter and asyncio.sleep."""

    def now(self) -> float:
        return time.perf_counter()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class Sample:
    """One finished request: when it was due, when it went out, when its answer came, and the answer."""

    scheduled_s: float
    sent_s: float
    done_s: float
    texts: int
    reply: Reply

    @property
    def latency_s(self) -> float:
        return self.done_s - self.scheduled_s


Sink = Callable[[Sample], None]


@dataclass(frozen=True)
class Window:
    """The measured part of a run: it starts `warmup_s` after `start_s` and lasts `duration_s`
    seconds or until `requests` requests have been sent (exactly one of the two)."""

    start_s: float
    warmup_s: float
    duration_s: float | None = None
    requests: int | None = None

    def __post_init__(self) -> None:
        if (self.duration_s is None) == (self.requests is None):
            raise ValueError("a window needs exactly one of duration_s and requests")

    @property
    def measure_from(self) -> float:
        return self.start_s + self.warmup_s

    @property
    def measure_until(self) -> float | None:
        return None if self.duration_s is None else self.measure_from + self.duration_s


class _SendBudget:
    """Decides whether a request due at time t is still part of the run."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.measured_sent = 0

    def take(self, due_s: float) -> bool:
        until = self.window.measure_until
        if until is not None:
            return due_s < until
        if due_s < self.window.measure_from:
            return True
        if self.measured_sent >= (self.window.requests or 0):
            return False
        self.measured_sent += 1
        return True


async def closed_loop(
    call: Call, next_texts: NextTexts, sink: Sink, concurrency: int, window: Window, clock: Clock
) -> None:
    """Run `concurrency` clients, each sending its next request as soon as its last one is answered."""
    budget = _SendBudget(window)

    async def client() -> None:
        while True:
            sent = clock.now()
            if not budget.take(sent):
                return
            texts = next_texts()
            reply = await call(texts)
            sink(Sample(sent, sent, clock.now(), len(texts), reply))

    await asyncio.gather(*(client() for _ in range(concurrency)))


def arrival_time(window: Window, rate: float, index: int) -> float:
    """Return when request number `index` (from 0) is due at `rate` requests per second."""
    return window.start_s + index / rate


async def open_loop(call: Call, next_texts: NextTexts, sink: Sink, rate: float, window: Window, clock: Clock) -> None:
    """Send request i at start + i/rate whether or not earlier ones were answered; wait for all answers."""
    budget = _SendBudget(window)
    pending: set[asyncio.Task] = set()

    async def one(due: float, texts: Sequence[str]) -> None:
        sent = clock.now()
        reply = await call(texts)
        sink(Sample(due, sent, clock.now(), len(texts), reply))

    index = 0
    while True:
        due = arrival_time(window, rate, index)
        if not budget.take(due):
            break
        await clock.sleep_until(due)  # returns at once when late: late requests go out together
        task = asyncio.create_task(one(due, next_texts()))
        pending.add(task)
        task.add_done_callback(pending.discard)
        index += 1
    if pending:
        await asyncio.gather(*pending)
