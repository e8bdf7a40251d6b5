"""A batch runs as calls over groups of similar token length (vectors.engine.length_groups)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.conftest import cosines
from vectors.engine.config import ModelConfig
from vectors.engine.encoder import Encoder
from vectors.engine.length_groups import grouped, length_groups


def cost(groups: list[np.ndarray], lengths: np.ndarray, call_cost: int) -> int:
    return sum(call_cost + len(group) * int(lengths[group].max()) for group in groups)


def cheapest_by_brute_force(lengths: np.ndarray, call_cost: int) -> int:
    ranked = np.sort(lengths)
    best = None
    for mask in itertools.product([False, True], repeat=len(ranked) - 1):  # every split of the sorted rows
        cuts = [0] + [i + 1 for i, cut in enumerate(mask) if cut] + [len(ranked)]
        total = sum(call_cost + (b - a) * int(ranked[b - 1]) for a, b in itertools.pairwise(cuts))
        best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_the_split_costs_the_least_any_split_could(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, rng.integers(1, 10))
    call_cost = int(rng.choice([0, 4, 16, 64, 1000]))
    groups = length_groups(lengths, call_cost)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))  # every row, once
    assert cost(groups, lengths, call_cost) == cheapest_by_brute_force(lengths, call_cost)


def test_a_large_call_cost_keeps_one_call_and_no_call_cost_one_call_per_length():
    lengths = np.array([9, 30, 9, 12, 30, 12, 12])
    assert len(length_groups(lengths, 10_000)) == 1
    groups = length_groups(lengths, 0)
    assert [sorted(g.tolist()) for g in groups] == [[0, 2], [3, 5, 6], [1, 4]]


def test_grouped_puts_rows_back_in_input_order_and_tells_each_call_its_width():
    lengths = np.array([20, 5, 20, 6, 5, 21])
    calls = []

    def run(rows: np.ndarray, width: int) -> np.ndarray:
        calls.append((sorted(rows.tolist()), width))
        return np.stack([rows * 10, lengths[rows]], axis=1)

    out = grouped(lengths, 0, len(lengths), run)
    assert out[:, 0].tolist() == [0, 10, 20, 30, 40, 50] and out[:, 1].tolist() == lengths.tolist()
    assert calls == [([1, 4], 5), ([3], 6), ([0, 2], 20), ([5], 21)]
    calls.clear()
    grouped(None, 0, 3, run)  # no lengths: one call, with every row in order
    assert calls == [([0, 1, 2], 0)]


@pytest.mark.parametrize(("backend", "dtype"), [("onnx", "fp32"), ("openvino", "int8"), ("torch", "fp32")])
def test_a_mixed_batch_runs_in_several_calls_and_gives_the_one_call_rows(backend, dtype, model_path, tmp_path):
    config = ModelConfig("g", model_path, device="cpu", backend=backend, dtype=dtype, cache_dir=str(tmp_path))
    encoder = Encoder(config)
    texts = ["short", "a longer sentence about the weather in the mountains today"] * 8 + ["mid length text here"]
    runner = encoder._run
    assert runner.counts_tokens
    runner.CALL_COST = 10**9
    whole, whole_counts = runner.counted(texts)
    runner.CALL_COST = 16
    calls = encoder.model_calls
    inner = []
    original = runner.run if backend != "torch" else None
    if original is not None:
        runner.run = lambda feeds: inner.append(next(iter(feeds.values())).shape) or original(feeds)
    split, split_counts = runner.counted(texts)
    assert split.shape == whole.shape and cosines(split, whole).min() >= 0.99999
    assert (split_counts == whole_counts).all()
    if original is not None:
        # 8 x "short" (3 tokens) alone; the 6-token text joins the 12-token ones (16 + 6 > 12 more padding)
        assert sorted(inner) == [(8, 3), (9, 12)]
    assert encoder.model_calls == calls  # still one call of the encoder
