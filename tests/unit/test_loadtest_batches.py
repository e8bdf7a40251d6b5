"""Mean batch size from /metrics: counters parsed, summed over models, subtracted between scrapes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from vectors.loadtest.batches import BatchCounters, BatchDelta, delta, parse_counters


def exposition(calls: dict[str, int], texts: dict[str, int]) -> str:
    registry = CollectorRegistry()
    model_calls = Counter("embed_model_calls", "calls", ["model"], registry=registry)
    texts_total = Counter("embed_texts", "texts", ["model"], registry=registry)
    for model, n in calls.items():
        model_calls.labels(model).inc(n)
    for model, n in texts.items():
        texts_total.labels(model).inc(n)
    return generate_latest(registry).decode()


def test_counters_are_summed_over_every_model():
    counters = parse_counters(exposition({"a": 3, "b": 2}, {"a": 30, "b": 70}))
    assert counters == BatchCounters(model_calls=5, texts=100)


def test_an_exposition_without_the_counters_gives_none():
    assert parse_counters("# nothing here\nother_metric 1\n") is None


def test_mean_batch_size_is_texts_over_model_calls_between_two_scrapes():
    change = delta(BatchCounters(10, 100), BatchCounters(30, 1700))
    assert change == BatchDelta(20, 1600)
    assert change.mean_batch_size == 80.0


def test_no_model_calls_or_a_failed_scrape_leave_the_batch_size_unknown():
    assert delta(BatchCounters(1, 1), BatchCounters(1, 1)).mean_batch_size is None
    assert delta(None, BatchCounters(1, 1)) is None


def test_a_metrics_page_that_is_not_prometheus_text_gives_none():
    assert parse_counters('{"vector": [0.1, 0.2]}\n') is None
