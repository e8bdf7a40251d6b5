"""A live progress line on stderr while a run goes: elapsed, answers, rate, errors."""

from __future__ import annotations

import asyncio
from typing import TextIO

from .schedule import Clock, Window
from .stats import Recorder

WIDTH = 24


def render(
    label: str, elapsed_s: float, planned_s: float | None, ok: int, failed: int, warming: bool, finishing: bool = False
) -> str:
    """Return one progress line (no newline)."""
    parts = [label]
    if planned_s:
        filled = round(min(1.0, max(0.0, elapsed_s / planned_s)) * WIDTH)
        parts.append("[" + "#" * filled + "." * (WIDTH - filled) + "]")
        parts.append(f"{elapsed_s:5.1f}/{planned_s:.0f} s")
    else:
        parts.append(f"{elapsed_s:5.1f} s")
    if warming:
        parts.append("warming up")
    else:
        rate = ok / elapsed_s if elapsed_s > 0 else 0.0
        parts.append(f"{ok} ok  {failed} failed  {rate:.0f} req/s")
    if finishing:
        parts.append("(waiting for the last answers)")
    return "  ".join(parts)


class Progress:
    """Redraws the line every `interval_s` until stopped; the finished line stays."""

    interval_s = 0.5

    def __init__(self, stream: TextIO, label: str, window: Window, recorder: Recorder, clock: Clock) -> None:
        self.stream = stream
        self.label = label
        self.window = window
        self.recorder = recorder
        self.clock = clock
        self._task: asyncio.Task | None = None

    def line(self) -> str:
        now = self.clock.now()
        warming = now < self.window.measure_from
        elapsed = max(0.0, now - self.window.measure_from)
        if warming:
            elapsed = now - self.window.start_s
            planned = self.window.warmup_s
        else:
            planned = self.window.duration_s
        finishing = planned is not None and not warming and elapsed > planned
        if finishing:
            elapsed = planned  # throughput counts answers inside the window only
        failed = self.recorder.requests - self.recorder.statuses["2xx"]
        return render(self.label, elapsed, planned, self.recorder.ok_so_far, failed, warming, finishing)

    def start(self) -> None:
        self._task = asyncio.create_task(self._redraw())

    async def _redraw(self) -> None:
        while True:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.stream.write("\r\x1b[2K" + self.line() + "\n")
        self.stream.flush()
