"""What the micro-batcher hands around: a request's texts, the pieces of one model call, the answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

EncodeFn = Callable[[Sequence[str]], np.ndarray | tuple[np.ndarray, np.ndarray | None]]  # rows[, counts]


@dataclass(frozen=True)
class Embedded:
    """One request's answer: its rows in input order and where its time went."""

    rows: np.ndarray
    queue_ms: float
    inference_ms: float
    batch_size: int
    tokens: np.ndarray | None = None  # each text's token count as the model saw it, where the call told
    token_total: int | None = None  # their sum, where the call told (summed once per batch)
    unit_rows: np.ndarray | None = None  # `rows` L2-normalised, float32 (normalised once per batch)


@dataclass(frozen=True)
class BatchStats:
    """What one model call did, for metrics."""

    size: int
    requests: int
    inference_ms: float


@dataclass(eq=False)
class Pending:
    """A request in the batcher: its texts, how many a batch has taken, and its rows as batches end."""

    texts: Sequence[str]
    tokens: Sequence[int]
    future: asyncio.Future
    enqueued_at: float
    taken: int = 0
    finished: int = 0
    started_at: float | None = None
    inference_ms: float = 0.0
    batch_size: int = 0
    dropped: bool = False
    rows: np.ndarray | None = None
    counts: np.ndarray | None = None
    token_total: int = 0
    unit: np.ndarray | None = None
    unit_missing: bool = False  # a batch gave some of its rows without their normalised form

    @property
    def waiting(self) -> int:
        return len(self.texts) - self.taken

    def fill(
        self,
        start: int,
        stop: int,
        rows: np.ndarray,
        inference_ms: float,
        batch_size: int,
        counts: np.ndarray | None,
        unit: np.ndarray | None = None,
        token_total: int | None = None,
    ) -> None:
        """Put one batch's rows for texts `start:stop` in place, with their normalised form and their token
        counts and total where the batch gives them; answer the request once every row is in."""
        if self.future.done():
            return
        self.rows = self._place(self.rows, rows, start, stop)
        if unit is None:
            self.unit_missing = True
        else:
            self.unit = self._place(self.unit, unit, start, stop)
        if counts is not None:
            self.counts = self._place(self.counts, counts, start, stop)
            self.token_total += int(counts.sum()) if token_total is None else token_total
        self.finished += stop - start
        self.inference_ms += inference_ms
        self.batch_size = max(self.batch_size, batch_size)
        if self.finished == len(self.texts):
            queue_ms = ((self.started_at or self.enqueued_at) - self.enqueued_at) * 1000
            counted = self.counts is not None
            answer = Embedded(
                self.rows,
                queue_ms,
                self.inference_ms,
                self.batch_size,
                self.counts,
                self.token_total if counted else None,
                None if self.unit_missing else self.unit,
            )
            self.future.set_result(answer)

    def _place(self, whole: np.ndarray | None, part: np.ndarray, start: int, stop: int) -> np.ndarray:
        """`part` as texts `start:stop` of an array over all of this request's texts (`part` itself if all)."""
        if whole is None:
            if start == 0 and stop == len(self.texts):
                return part
            whole = np.zeros((len(self.texts), *part.shape[1:]), dtype=part.dtype)
        whole[start:stop] = part
        return whole


@dataclass(eq=False)
class Slice:
    """The texts `start:stop` of one request, taken into one batch."""

    pending: Pending
    start: int
    stop: int


@dataclass(eq=False)
class Batch:
    """One model call: its pieces of requests, their texts, token counts, and the order it runs them in."""

    slices: list[Slice]
    texts: list[str]
    tokens: list[int]
    started: float
    order: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.order = np.argsort(np.asarray(self.tokens), kind="stable")


@dataclass
class BatcherCounters:
    """Running totals since the batcher started."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    rejected_full: int = 0
    expired: int = 0
    cancelled: int = 0
    failed: int = 0
    sizes: list[int] = field(default_factory=list)


def rows_and_counts(result: object) -> tuple[np.ndarray, np.ndarray | None]:
    """A model call's result: rows alone, or (rows, each text's token count or None)."""
    if isinstance(result, tuple):
        rows, counts = result
        return rows, None if counts is None else np.asarray(counts, dtype=np.int64)
    return result, None  # type: ignore[return-value]


def unit_rows(rows: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """`rows` L2-normalised (a zero row stays zero), contiguous, computed in `dtype`: float32 (one pass for a
    whole batch, as served) or float64 (the quality metrics)."""
    rows = np.asarray(rows, dtype=dtype)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.maximum(norms, 1e-12), dtype=dtype)


def unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Put a batch's results, computed in `order` (by length), back in the order the texts came in."""
    unsorted = np.empty_like(values)
    unsorted[order] = values
    return unsorted
