"""The packaged model behind Encoder and Engine: token counts, and the encode lanes of a CPU engine."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pytest

from tests.conftest import ROOT, cosines
from vectors.engine.config import ModelConfig
from vectors.engine.registry import Registry


@pytest.fixture(scope="module")
def registry(model_path: str):
    """A CPU model served with the default lanes, and the same model held to one batch at a time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "cpu_count", lambda: 2)  # the lanes are decided at load, from the core count
        registry = Registry(
            [
                ModelConfig("minilm", model_path, device="cpu", warmup=False),
                ModelConfig("one-lane", model_path, device="cpu", warmup=False, parallel_batches=1),
            ]
        )
        registry.load_all()
    yield registry
    for engine in registry.engines():
        for executor in engine.executors:
            executor.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def recorded(registry):
    """Record each encode call of the default engine: its thread, its `threads` argument, its size."""
    encoder = registry.get().encoder
    calls: list[tuple[str, int | None, int]] = []
    lock = threading.Lock()
    real = encoder.encode_counted

    def encode_counted(texts, threads=None):
        with lock:
            calls.append((threading.current_thread().name, threads, len(texts)))
        return real(texts, threads)

    encoder.encode_counted = encode_counted
    yield calls
    del encoder.encode_counted


def corpus_lines() -> list[str]:
    lines = (ROOT / "bench" / "corpora" / "default.txt").read_text(encoding="utf-8").splitlines()
    return lines[::50]  # a few hundred lines of every kind in the corpus


def varied_texts() -> list[str]:
    lines = corpus_lines()
    long_text = " ".join(lines[:120])
    return [
        *lines,
        "",
        " ",
        "   \t\n  ",
        "hello 👋🏽 world 🎉🎉",
        "👨‍👩‍👧‍👦",
        "cafe\u0301 nai\u0308ve re\u0301sume\u0301",  # combining accents
        "café naïve résumé",
        "今天天气很好，我们去公园散步吧。",
        "机器学习模型把句子变成向量",
        long_text,
    ]


def tokenizer_counts(encoder, texts: list[str]) -> list[int]:
    return [len(encoder.tokenizer([t], add_special_tokens=True, truncation=False)["input_ids"][0]) for t in texts]


# -- token counts ---------------------------------------------------------------------------


def test_token_counts_equal_the_tokenizers_own_counts_one_text_and_many(registry):
    encoder = registry.get().encoder
    assert encoder._counter is not None, "the Rust tokenizer copy is not in use"
    texts = varied_texts()
    want = tokenizer_counts(encoder, texts)
    assert want[-1] > 600 and want[-1] > encoder.max_seq_length  # counted before any truncation
    assert len(texts) > 300
    assert encoder.token_counts(texts) == want
    assert [encoder.token_counts([t])[0] for t in texts] == want
    assert encoder.token_counts([]) == []


def test_token_counts_stay_untruncated_after_the_model_encoded_a_long_text(registry):
    encoder = registry.get().encoder
    long_text = varied_texts()[-1]
    want = tokenizer_counts(encoder, [long_text])
    encoder.encode([long_text, "short"])  # the model's tokenizer truncates to max_seq_length here
    assert encoder.token_counts([long_text]) == want
    assert encoder.token_counts([long_text, "short"]) == [want[0], tokenizer_counts(encoder, ["short"])[0]]


# -- encode lanes ---------------------------------------------------------------------------


async def test_a_cpu_engine_gets_two_lanes_by_default_and_one_with_parallel_batches_1(registry):
    import torch

    lanes = registry.get("minilm")
    assert lanes.encoder.threads_per_call_adjustable
    assert lanes.batcher() is lanes.batcher()
    assert len(lanes.executors) == 2 and lanes.executors[0] is lanes.executor
    alone = lanes.executor.submit(torch.get_num_threads).result()
    assert lanes.threads_alone == alone
    assert lanes.threads_together == max(1, alone // 2)
    single = registry.get("one-lane")
    single.batcher()
    assert single.executors == [single.executor]
    assert single.threads_alone is None and single.threads_together is None


class FakeEncoder:
    """Just enough of an Encoder for the engine to decide its lanes."""

    adjustable = True
    device = "cpu"

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.threads_per_call_adjustable = FakeEncoder.adjustable
        self.threads = 4
        self.prepared: list[tuple[int, int]] = []

    def prepare_parallel(self, threads: int, calls: int) -> None:
        self.prepared.append((threads, calls))

    def encode(self, texts, threads=None):
        return np.zeros((len(texts), 3), dtype=np.float32)


@pytest.mark.parametrize(
    ("device", "cores", "parallel_batches", "adjustable", "lanes"),
    [
        ("cpu", 1, None, True, 1),
        ("cpu", 2, None, True, 2),
        ("cpu", 16, None, True, 2),
        ("cpu", 16, 3, True, 3),
        ("cpu", 16, 1, True, 1),
        ("cpu", 16, 4, False, 1),
        # CUDA: two lanes whatever the cores - one tokenises while the other's kernels run
        ("cuda", 1, None, False, 2),
        ("cuda:1", 16, None, False, 2),
        ("cuda", 16, 1, False, 1),
        ("cuda", 16, 3, False, 3),
    ],
)
def test_the_lane_count_follows_the_cores_the_setting_and_the_backend(
    monkeypatch, device, cores, parallel_batches, adjustable, lanes
):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(FakeEncoder, "adjustable", adjustable)
    monkeypatch.setattr(FakeEncoder, "device", device)
    config = ModelConfig("fake", "unused", warmup=False, parallel_batches=parallel_batches)
    engine = Registry([config], make_encoder=FakeEncoder).get()
    try:
        engine.encoder  # noqa: B018 - loading decides the lanes
        assert len(engine.executors) == lanes
        assert (engine.threads_alone is None) == (lanes == 1)
        assert engine.encoder.prepared == ([] if lanes == 1 else [(max(1, 4 // lanes), lanes)])
        assert len({id(executor) for executor in engine.executors}) == lanes
    finally:
        for executor in engine.executors:
            executor.shutdown(wait=False)


async def test_one_lane_engine_runs_every_batch_in_its_one_thread(registry):
    engine = registry.get("one-lane")
    encoder = engine.encoder
    seen = set()
    real = encoder.encode_counted

    def encode_counted(texts, threads=None):
        seen.add(threading.current_thread().name)
        return real(texts)

    encoder.encode_counted = encode_counted
    try:
        texts = [f"one lane text {i}" for i in range(20)]
        batcher = engine.batcher()
        await asyncio.wait_for(asyncio.gather(*(batcher.submit([t], encoder.token_counts([t])) for t in texts)), 60)
    finally:
        del encoder.encode_counted
    assert seen == {"encode-one-lane_0"}


async def test_parallel_narrow_batches_give_the_vectors_of_the_wide_path(registry, recorded):
    engine = registry.get()
    encoder = engine.encoder
    batcher = engine.batcher()
    texts = corpus_lines()[:16]
    texts[5] = "今天天气很好"
    counts = encoder.token_counts(texts)
    wide = []
    for text, count in zip(texts, counts, strict=True):  # one at a time: each finds both lanes idle
        wide.append((await asyncio.wait_for(batcher.submit([text], [count]), 60)).rows)
    wide = np.vstack(wide)
    assert {(thread, threads) for thread, threads, _ in recorded} == {("encode-minilm_0", engine.threads_alone)}
    recorded.clear()
    burst = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit([t], [n]) for t, n in zip(texts, counts, strict=True))), 60
    )
    narrow = np.vstack([r.rows for r in burst])
    assert sorted(size for _, _, size in recorded) == [8, 8]
    assert {(thread, threads) for thread, threads, _ in recorded} == {
        ("encode-minilm_0", engine.threads_together),
        ("encode-minilm-lane1_0", engine.threads_together),
    }
    assert narrow.shape == wide.shape == (16, encoder.dimensions)
    assert cosines(narrow, wide).min() >= 0.9999
    # Each lane thread keeps its own torch thread count.
    import torch

    assert engine.executors[1].submit(torch.get_num_threads).result() == engine.threads_together


def test_a_max_seq_length_past_the_models_positions_is_refused_at_load_and_its_own_limit_is_kept(model_path):
    from vectors.engine.encoder import Encoder
    from vectors.engine.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="max_seq_length 513 is more than the 512 positions"):
        Encoder(ModelConfig("long", model_path, device="cpu", max_seq_length=513, warmup=False, torch_jit=False))
    longest = Encoder(ModelConfig("longest", model_path, device="cpu", max_seq_length=512, torch_jit=False))
    assert longest.max_seq_length == 512
    rows = longest.encode(["word " * 600])  # cut to 512 tokens, not failed at the 513th position
    assert rows.shape == (1, 384) and np.isfinite(rows).all()
