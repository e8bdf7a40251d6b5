"""Frozen configuration passed into the engine; settings.py builds these from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatcherConfig:
    """How requests are gathered into batches and how much may wait.

    max_batch_size: texts per model call. Larger batches raise throughput until the
        cores are saturated, then only add latency.
    max_batch_tokens: token budget per model call (sum of padded lengths); keeps a batch
        of long texts from costing as much memory and time as many short batches.
    max_queue_inputs: texts allowed to wait; past it a request is refused with 429 at once
        instead of waiting longer than any client would.
    queue_timeout_ms: how long a request may wait for its batch to start; past it, 503.
    inference_timeout_ms: how long one model call may take before the engine is declared
        stuck (its waiters get 503 and readiness turns false).
    max_wait_ms: under load only, how long to wait for a fuller batch; never when idle.
    split_min_inputs: with several encode lanes, a queue of at least this many texts found
        with every lane idle is split across the lanes; a smaller one runs alone with every
        thread (the lowest latency for a lone request).
    """

    max_batch_size: int = 64
    max_batch_tokens: int = 16384
    max_queue_inputs: int = 8192
    queue_timeout_ms: float = 30_000
    inference_timeout_ms: float = 60_000
    max_wait_ms: float = 0.0
    split_min_inputs: int = 8


@dataclass(frozen=True)
class ModelConfig:
    """One served model: where its weights are, where it runs, and how it batches.

    backend / dtype: torch fp32|bf16|fp16 (fp16 on CUDA only), onnx fp32|int8, openvino fp32|bf16|int8;
        vectors.engine.support says which run where.
    torch_threads: threads of one model call, whatever the backend (None: torch's default).
    parallel_batches: batches that may run at once (torch on CPU only; None: 2 where there are at
        least 2 cores, else 1). While several run, each gets torch_threads / parallel_batches
        threads; a batch running alone gets all of them.
    torch_jit: torch on the CPU runs the model as a TorchScript trace, checked against the eager model at
        load (vectors.engine.backends.TorchRunner); False: always eagerly.
    torch_linear: which library multiplies the trace's fp32 Linear layers: "torch" (MKL on x86),
        "onednn", or "auto" (oneDNN on a non-Intel x86 CPU with AVX-512; vectors.engine.onednn).
    cache_dir: where exported (onnx/openvino) artifacts go when the model's own directory is not
        writable or is an installed package; '' means ~/.cache/embedservice.
    hub_cache_dir: where a model named by hub id is cached (sentence-transformers' cache_folder, from
        SENTENCE_TRANSFORMERS_HOME); None: the Hugging Face cache. Nothing is downloaded: the export key
        reads the snapshot cached there.
    """

    name: str
    path: str
    device: str = "auto"
    backend: str = "torch"
    dtype: str = "fp32"
    max_seq_length: int | None = None
    torch_threads: int | None = None
    parallel_batches: int | None = None
    torch_jit: bool = True
    torch_linear: str = "auto"
    warmup: bool = True
    batcher: BatcherConfig = field(default_factory=BatcherConfig)
    cache_dir: str = ""
    hub_cache_dir: str | None = None
