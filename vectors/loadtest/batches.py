"""Mean batch size from the server's own counters: GET /metrics before and after, texts / model calls."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

MODEL_CALLS = "embed_model_calls"
TEXTS = "embed_texts"


@dataclass(frozen=True)
class BatchCounters:
    """Totals of embed_model_calls_total and embed_texts_total over every model."""

    model_calls: float
    texts: float


@dataclass(frozen=True)
class BatchDelta:
    """What the server did between two scrapes."""

    model_calls: int
    texts: int

    @property
    def mean_batch_size(self) -> float | None:
        return self.texts / self.model_calls if self.model_calls else None

    def to_dict(self) -> dict:
        return {"model_calls": self.model_calls, "texts": self.texts, "mean_batch_size": self.mean_batch_size}


def parse_counters(text: str) -> BatchCounters | None:
    """Return the batch counters in a Prometheus text exposition, or None when it has none."""
    totals = {MODEL_CALLS: 0.0, TEXTS: 0.0}
    found = False
    try:
        for family in text_string_to_metric_families(text):
            if family.name not in totals:
                continue
            for sample in family.samples:
                if sample.name == f"{family.name}_total":
                    totals[family.name] += sample.value
                    found = True
    except ValueError:  # not a Prometheus exposition: some other server answered /metrics
        return None
    return BatchCounters(totals[MODEL_CALLS], totals[TEXTS]) if found else None


def delta(before: BatchCounters | None, after: BatchCounters | None) -> BatchDelta | None:
    """Return after - before, or None when either scrape failed."""
    if before is None or after is None:
        return None
    return BatchDelta(round(after.model_calls - before.model_calls), round(after.texts - before.texts))


async def scrape(client: httpx.AsyncClient) -> BatchCounters | None:
    """GET /metrics on the client's base URL; None when the server has no usable /metrics."""
    try:
        response = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_counters(response.text)
