"""One load run: open a session to an endpoint, drive a schedule, record, read the server's batch counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

import httpx

from . import batches, endpoints
from .corpus import batches as text_batches
from .schedule import Clock, MonotonicClock, Window, closed_loop, open_loop
from .stats import Recorder, Summary


@dataclass(frozen=True)
class LoadPlan:
    """The load to apply: a closed loop (concurrency) or an open loop (rate), for a duration or a request count."""

    endpoint: str
    concurrency: int | None
    rate: float | None
    duration_s: float | None
    requests: int | None
    warmup_s: float
    inputs_per_request: int
    timeout_s: float
    connections: int | None = None  # open loop only; a closed loop opens one per client

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    @property
    def pool_size(self) -> int:
        return self.concurrency if self.rate is None else (self.connections or 1)  # type: ignore[return-value]


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured, with the server's batch counters over the measured window."""

    design: str
    endpoint: str
    summary: Summary
    batches: batches.BatchDelta | None
    client_cpu_share: float | None = None  # CPU the load generator itself used, in cores (1.0 = one core busy)

    @property
    def mean_batch_size(self) -> float | None:
        return self.batches.mean_batch_size if self.batches else None

    def to_dict(self) -> dict:
        return {
            "design": self.design,
            "endpoint": self.endpoint,
            "summary": self.summary.to_dict(),
            "batches": self.batches.to_dict() if self.batches else None,
            "client_cpu_share": self.client_cpu_share,
        }


async def run_load(
    base_url: str,
    plan: LoadPlan,
    texts: Sequence[str],
    design: str = "",
    progress: TextIO | None = None,
    clock: Clock | None = None,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Apply `plan` to the server at `base_url`, each request carrying `headers`, and return what was measured."""
    from .progress import Progress

    clock = clock or MonotonicClock()
    endpoint = endpoints.get(plan.endpoint)
    session = endpoint.open(base_url, plan.pool_size, plan.timeout_s, headers)
    source = text_batches(texts, plan.inputs_per_request)
    window = Window(clock.now(), plan.warmup_s, plan.duration_s, plan.requests)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    recorder = Recorder(window)
    meter = Progress(progress, design or plan.endpoint, window, recorder, clock) if progress else None
    async with httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as probe:

        async def counters_at_window_start() -> batches.BatchCounters | None:
            await clock.sleep_until(window.measure_from)
            return await batches.scrape(probe)

        before = asyncio.create_task(counters_at_window_start())
        if meter:
            meter.start()
        try:
            if plan.rate is not None:
                await open_loop(session.call, lambda: next(source), recorder.add, plan.rate, window, clock)
            else:
                assert plan.concurrency is not None
                await closed_loop(session.call, lambda: next(source), recorder.add, plan.concurrency, window, clock)
        finally:
            if meter:
                await meter.stop()
            await session.aclose()
        cpu_share = (time.process_time() - cpu_started) / max(time.perf_counter() - wall_started, 1e-9)
        delta = batches.delta(await before, await batches.scrape(probe))
    return LoadResult(design or endpoint.description, plan.endpoint, recorder.summary(), delta, cpu_share)
