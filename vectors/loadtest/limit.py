"""The model's own limit: offline batched encode throughput, measured in a separate process.

The child loads the model exactly as the server does (vectors.engine.encoder.Encoder with the
same ModelConfig, so the same device, backend and torch thread count) and encodes the run's
corpus at several batch sizes; the best texts/s is the limit a served figure is divided by.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..engine.batches import EncodeFn
from ..engine.config import BatcherConfig, ModelConfig

DEFAULT_BATCH_SIZES = (16, 32, 64, 128)


@dataclass(frozen=True)
class LimitResult:
    """Offline throughput per batch size and the best of them."""

    model: str
    texts_per_s: float
    best_batch_size: int
    by_batch_size: dict[int, float]
    torch_threads: int | None = None
    # texts/s with `parallel` batches at once, one thread per `torch_threads / parallel` (as the service
    # runs them); empty when the model runs one batch at a time
    parallel_by_batch_size: dict[int, float] = field(default_factory=dict)
    parallel: int = 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["by_batch_size"] = {str(k): v for k, v in self.by_batch_size.items()}
        data["parallel_by_batch_size"] = {str(k): v for k, v in self.parallel_by_batch_size.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LimitResult:
        return cls(
            model=data["model"],
            texts_per_s=data["texts_per_s"],
            best_batch_size=data["best_batch_size"],
            by_batch_size={int(k): v for k, v in data["by_batch_size"].items()},
            torch_threads=data.get("torch_threads"),
            parallel_by_batch_size={int(k): v for k, v in data.get("parallel_by_batch_size", {}).items()},
            parallel=data.get("parallel", 1),
        )


class LimitError(RuntimeError):
    """The limit could not be measured."""


def measure(
    encode: EncodeFn,
    texts: Sequence[str],
    batch_sizes: Sequence[int],
    seconds_per_size: float,
    clock: Callable[[], float] = time.perf_counter,
    passes: int = 2,
) -> dict[int, float]:
    """Return texts/s for each batch size: consecutive batches of the corpus for about `seconds_per_size`.

    The time is split into `passes` passes, in rising then falling order of size, and each size keeps its
    best pass: like timeit's best-of-repeats, a burst of other work on a shared machine then lowers one
    pass, not the limit.
    """
    rates: dict[int, float] = {}
    position = 0

    def next_batch(size: int) -> list[str]:
        nonlocal position
        batch = [texts[(position + i) % len(texts)] for i in range(size)]
        position += size
        return batch

    for number in range(passes):
        for size in batch_sizes if number % 2 == 0 else list(reversed(batch_sizes)):
            encode(next_batch(size))  # first call at a new shape pays one-time costs
            encoded, started = 0, clock()
            while True:
                encode(next_batch(size))
                encoded += size
                elapsed = clock() - started
                if elapsed >= seconds_per_size / passes and encoded >= 2 * size:
                    break
            rates[size] = max(rates.get(size, 0.0), encoded / elapsed)
    return {size: rates[size] for size in batch_sizes}


def side_by_side(
    encode: EncodeFn, parts: Sequence[Sequence[str]], size: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Return texts/s of one thread per part, all at once, each encoding its part in batches of `size`.

    How the service runs EMBED_PARALLEL_BATCHES batches at a time; `encode` sets the threads per call.
    """

    def run(part: Sequence[str]) -> None:
        for i in range(0, len(part), size):
            encode(part[i : i + size])

    with ThreadPoolExecutor(len(parts)) as pool:
        started = clock()
        for future in [pool.submit(run, part) for part in parts]:
            future.result()
        return sum(map(len, parts)) / (clock() - started)


def best(
    model: str,
    rates: dict[int, float],
    torch_threads: int | None = None,
    parallel_rates: dict[int, float] | None = None,
    parallel: int = 1,
) -> LimitResult:
    """The limit: the fastest batch size, one batch at a time or `parallel` at once."""
    parallel_rates = parallel_rates or {}
    candidates = {
        **{(size, 1): r for size, r in rates.items()},
        **{(size, parallel): r for size, r in parallel_rates.items()},
    }
    size, _ = max(candidates, key=candidates.__getitem__)
    return LimitResult(model, max(candidates.values()), size, rates, torch_threads, parallel_rates, parallel)


def measure_side_by_side(
    encode: EncodeFn, texts: Sequence[str], batch_sizes: Sequence[int], parallel: int, seconds_per_size: float
) -> dict[int, float]:
    """Return texts/s for each batch size with `parallel` threads encoding their own batches at once."""
    rates: dict[int, float] = {}
    for size in batch_sizes:
        part = max(2 * size, 256)
        parts = [[texts[(k * part + i) % len(texts)] for i in range(part)] for k in range(parallel)]
        side_by_side(encode, parts, size)  # first calls at a new shape pay one-time costs
        encoded, started, best_rate = 0, time.perf_counter(), 0.0
        while encoded == 0 or time.perf_counter() - started < seconds_per_size:
            best_rate = max(best_rate, side_by_side(encode, parts, size))
            encoded += part * parallel
        rates[size] = best_rate
    return rates


def config_to_dict(config: ModelConfig) -> dict:
    return asdict(config)


def config_from_dict(data: dict) -> ModelConfig:
    return ModelConfig(**{**data, "batcher": BatcherConfig(**data["batcher"])})


def run_child(
    config: ModelConfig,
    texts: Sequence[str],
    batch_sizes: Sequence[int],
    seconds_per_size: float,
    timeout_s: float = 900,
) -> LimitResult:
    """Measure the limit in a fresh Python process and return its result.

    Raises:
        LimitError: the child failed or overran `timeout_s`.
    """
    job = {
        "config": config_to_dict(config),
        "texts": list(texts),
        "batch_sizes": list(batch_sizes),
        "seconds_per_size": seconds_per_size,
    }
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vectors.loadtest.limit"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            cwd=root,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed the child
        raise LimitError(f"measuring the model's limit took longer than {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise LimitError(f"measuring the model's limit failed:\n{done.stderr[-2000:]}")
    return LimitResult.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Child side: read a job as JSON on stdin, load the model, print the result as JSON."""
    job = json.loads(sys.stdin.read())
    from ..engine.encoder import Encoder
    from ..engine.registry import parallel_batches

    config = config_from_dict(job["config"])
    encoder = Encoder(config)
    encoder.warm()
    import torch

    threads = torch.get_num_threads()
    rates = measure(encoder.encode, job["texts"], job["batch_sizes"], job["seconds_per_size"])
    parallel = parallel_batches(config, encoder)
    parallel_rates = {}
    if parallel > 1:
        together = max(1, encoder.threads // parallel)
        encoder.prepare_parallel(together, parallel)
        narrow = functools.partial(encoder.encode, threads=together)
        parallel_rates = measure_side_by_side(
            narrow, job["texts"], job["batch_sizes"], parallel, job["seconds_per_size"]
        )
    result = best(config.name, rates, threads, parallel_rates, parallel)
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")


if __name__ == "__main__":
    main()
