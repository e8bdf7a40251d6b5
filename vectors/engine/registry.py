"""Named models -> engines; each model loads once per process, its batcher once per event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async

from .batcher import MicroBatcher
from .batches import BatchStats
from .config import ModelConfig
from .encoder import Encoder
from .errors import EngineStopped, UnknownModel

EncoderFactory = Callable[[ModelConfig], Encoder]
BatchHook = Callable[[str, BatchStats], None]


def parallel_batches(config: ModelConfig, encoder: Encoder) -> int:
    """How many batches of this model run at once: EMBED_PARALLEL_BATCHES, else 2 on a CPU with 2+ cores
    and 2 on CUDA, else 1.

    On CUDA the two are a pipeline, not a split of the cores: while one batch's kernels run on the GPU,
    the other lane tokenises the next batch and copies the last one's rows back (each lane has its own
    CUDA stream, vectors.engine.backends.TorchRunner), so the GPU does not sit idle during the CPU work.
    """
    if str(getattr(encoder, "device", "cpu")).startswith("cuda"):
        return config.parallel_batches or 2
    if not getattr(encoder, "threads_per_call_adjustable", False):
        return 1
    if config.parallel_batches:
        return config.parallel_batches
    return 2 if (os.cpu_count() or 1) >= 2 else 1


class Engine:
    """One served model: its encoder, its single encode thread, its batcher per event loop."""

    def __init__(self, config: ModelConfig, make_encoder: EncoderFactory, on_batch: BatchHook | None) -> None:
        self.config = config
        self.name = config.name
        self._make_encoder = make_encoder
        self._on_batch = on_batch
        self._encoder: Encoder | None = None
        self._load_lock = threading.Lock()
        # The one thread that runs model.encode for this model, shared by every loop.
        self._thread_prefix = f"encode-{config.name}"
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_prefix)
        # Lane 0 is `executor`; the others exist once the model is loaded and runs on the CPU.
        self.executors: list[ThreadPoolExecutor] = [self.executor]
        self.threads_alone: int | None = None
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MicroBatcher] = weakref.WeakKeyDictionary()
        self._closed = False

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    @property
    def encoder(self) -> Encoder:
        """Return the encoder, loading (and warming) it on first use."""
        if self._encoder is None:
            with self._load_lock:
                if self._encoder is None:
                    if threading.current_thread().name.startswith(self._thread_prefix):
                        self._encoder = self._load()
                    else:
                        # Load and warm in the encode thread, where every later model call runs: torch's
                        # OpenMP pool belongs to the thread that first runs a parallel op, and a second
                        # pool (the main thread's, from a warm-up there) slowed each encode by ~20 %.
                        self._encoder = self.executor.submit(self._load).result()
        return self._encoder

    def _load(self) -> Encoder:
        encoder = self._make_encoder(self.config)
        if self.config.warmup:
            encoder.warm()
        lanes = parallel_batches(self.config, encoder)
        if lanes > 1:
            self.threads_alone = encoder.threads
            encoder.prepare_parallel(max(1, self.threads_alone // lanes), lanes)
            self.executors += [
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self._thread_prefix}-lane{lane}")
                for lane in range(1, lanes)
            ]
        return encoder

    def lane_threads(self) -> list[threading.Thread]:
        """The live threads of this model's encode lanes."""
        lanes = (f"{self._thread_prefix}_", f"{self._thread_prefix}-lane")  # ThreadPoolExecutor adds "_<n>"
        return [thread for thread in threading.enumerate() if thread.name.startswith(lanes)]

    @property
    def threads_together(self) -> int | None:
        """Threads of each call while several batches run (None: one batch at a time)."""
        if self.threads_alone is None:
            return None
        return max(1, self.threads_alone // len(self.executors))

    async def aencoder(self) -> Encoder:
        """Return the encoder without blocking the event loop while it loads."""
        if self._encoder is not None:
            return self._encoder
        return await sync_to_async(lambda: self.encoder, thread_sensitive=False)()

    def batcher(self) -> MicroBatcher:
        """Return the running loop's batcher for this model, creating it on first use."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            if self._closed:
                raise EngineStopped(f"model {self.name!r} was closed")
            hook = None
            if self._on_batch is not None:
                on_batch, name = self._on_batch, self.name

                def hook(stats: BatchStats) -> None:
                    on_batch(name, stats)

            encoder = self.encoder
            if len(self.executors) > 1:
                alone, together = self.threads_alone, self.threads_together
                batcher = MicroBatcher(
                    lambda texts: encoder.encode_counted(texts, threads=alone),
                    self.config.batcher,
                    self.executors,
                    hook,
                    narrow_encode=lambda texts: encoder.encode_counted(texts, threads=together),
                )
            else:
                batcher = MicroBatcher(encoder.encode_counted, self.config.batcher, self.executor, hook)
            self._batchers[loop] = batcher
        return batcher

    def batchers(self) -> list[MicroBatcher]:
        """Return every live batcher of this model (one per event loop that used it)."""
        return list(self._batchers.values())

    def close(self) -> None:
        """Stop this model's batchers, each on its own loop; their waiters get EngineStopped, and so does new work.

        Call it where an engine is dropped while a loop that used it runs on: its batcher's task waits
        there for work that can no longer come, and would be destroyed still pending with the engine. The
        encode threads are left to end with their executors: a batcher on another loop may still hand
        them a batch before its cancel runs there, and that batch must find them.
        """
        self._closed = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, batcher in list(self._batchers.items()):
            if loop is running:
                batcher.cancel()
            else:
                with contextlib.suppress(RuntimeError):  # a closed loop: its tasks were cancelled as it closed
                    loop.call_soon_threadsafe(batcher.cancel)


class Registry:
    """The served models by name, with a default for requests that name none."""

    def __init__(
        self,
        configs: list[ModelConfig],
        make_encoder: EncoderFactory = Encoder,
        on_batch: BatchHook | None = None,
    ) -> None:
        if not configs:
            raise ValueError("at least one model must be configured")
        self._engines = {c.name: Engine(c, make_encoder, on_batch) for c in configs}
        self.default_name = configs[0].name
        self.closed = False

    @property
    def names(self) -> list[str]:
        return list(self._engines)

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def get(self, name: str | None = None) -> Engine:
        """Return the engine for `name` (the default when None or empty).

        Raises:
            UnknownModel: no model of that name is served.
        """
        if not name:
            return self._engines[self.default_name]
        engine = self._engines.get(name)
        if engine is None:
            raise UnknownModel(name, self.names)
        return engine

    def close(self) -> None:
        """Stop every model's batchers (a registry being replaced): waiters and new work get EngineStopped."""
        self.closed = True
        for engine in self._engines.values():
            engine.close()

    def load_all(self) -> None:
        """Load and warm every model now (before accepting traffic)."""
        for engine in self._engines.values():
            engine.encoder  # noqa: B018 - loading is the point
