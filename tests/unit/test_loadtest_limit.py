"""The model's offline limit: texts/s per batch size, best of them, config carried to the child process."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vectors.engine.config import BatcherConfig, ModelConfig
from vectors.loadtest.limit import LimitResult, best, config_from_dict, config_to_dict, measure


class FakeModel:
    """Costs 10 ms per call plus 1 ms per text on a fake clock: bigger batches are faster per text."""

    def __init__(self) -> None:
        self.now = 0.0
        self.batches: list[list[str]] = []

    def clock(self) -> float:
        return self.now

    def encode(self, texts):
        self.batches.append(list(texts))
        self.now += 0.010 + 0.001 * len(texts)
        return np.zeros((len(texts), 4), dtype=np.float32)


def test_measure_reports_texts_per_second_for_each_batch_size():
    model = FakeModel()
    rates = measure(model.encode, ["a", "b", "c"], [1, 10, 100], seconds_per_size=1.0, clock=model.clock)
    assert rates[1] == pytest.approx(1 / 0.011)
    assert rates[10] == pytest.approx(10 / 0.020)
    assert rates[100] == pytest.approx(100 / 0.110)


def test_measure_walks_the_corpus_in_order_and_warms_each_batch_size_once():
    model = FakeModel()
    measure(model.encode, ["a", "b", "c"], [2], seconds_per_size=0.0, clock=model.clock, passes=1)
    assert model.batches == [["a", "b"], ["c", "a"], ["b", "c"]]  # one warm-up call, then two measured


def test_measure_keeps_each_batch_sizes_best_pass_so_a_burst_of_other_work_does_not_count():
    model = FakeModel()
    calls = itertools.count()

    def encode(texts):
        if next(calls) < 3:  # the first pass runs while something else holds the cores
            model.now += 1.0
        return model.encode(texts)

    rates = measure(encode, ["a"], [10], seconds_per_size=0.2, clock=model.clock, passes=2)
    assert rates[10] == pytest.approx(10 / 0.020)


def test_the_best_batch_size_gives_the_limit():
    result = best("m", {16: 100.0, 64: 250.0, 128: 240.0}, torch_threads=2)
    assert (result.texts_per_s, result.best_batch_size) == (250.0, 64)
    assert LimitResult.from_dict(result.to_dict()) == result


def test_the_model_config_survives_the_trip_to_the_child_process():
    config = ModelConfig("m", "/models/m", device="cpu", torch_threads=3, batcher=BatcherConfig(max_batch_size=64))
    assert config_from_dict(config_to_dict(config)) == config


def test_the_fake_clock_only_moves_when_the_model_works():
    model = FakeModel()
    assert list(itertools.islice(iter(model.clock, None), 2)) == [0.0, 0.0]


def test_side_by_side_runs_one_thread_per_part_at_once_in_batches_of_the_size():
    import threading

    from vectors.loadtest.limit import side_by_side

    both_in = threading.Barrier(2, timeout=5)  # fails unless the two parts really run at the same time
    calls: list[tuple[str, list[str]]] = []

    def encode(texts):
        calls.append((threading.current_thread().name, list(texts)))
        if len(calls) <= 2:
            both_in.wait()
        return np.zeros((len(texts), 4), dtype=np.float32)

    parts = [[f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)]]
    rate = side_by_side(encode, parts, 2)
    assert rate > 0
    assert len({thread for thread, _ in calls}) == 2
    for part in parts:
        assert [t for _, batch in calls for t in batch if t in part] == part
        assert sorted(len(b) for _, b in calls if b[0] in part) == [1, 2, 2]


def test_the_limit_is_the_fastest_way_one_batch_at_a_time_or_several_at_once():
    one = best("m", {32: 290.0, 64: 300.0}, 2)
    assert (one.texts_per_s, one.best_batch_size, one.parallel) == (300.0, 64, 1)
    both = best("m", {32: 290.0, 64: 300.0}, 2, {32: 320.0, 64: 310.0}, 2)
    assert (both.texts_per_s, both.best_batch_size, both.parallel) == (320.0, 32, 2)
    assert LimitResult.from_dict(both.to_dict()) == both
    slower = best("m", {32: 290.0, 64: 300.0}, 2, {32: 250.0}, 2)
    assert (slower.texts_per_s, slower.best_batch_size) == (300.0, 64)
