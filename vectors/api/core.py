"""The one core of embedding request handling, shared by the HTTP views and the WebSocket consumer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import conf
from ..engine.config import BatcherConfig
from ..engine.registry import Engine
from .errors import InputTooLong, InvalidRequest
from .serializers import Inputs


@dataclass(frozen=True)
class EmbedJob:
    """What to embed and how to shape it."""

    inputs: Inputs
    model: str | None = None
    truncate: bool = True
    normalize: bool | None = None  # None: as the model's own pipeline does
    dimensions: int | None = None
    param: str = "input"


@dataclass(frozen=True)
class EmbedOutcome:
    """Vectors in input order, with the figures the response and the log need."""

    vectors: np.ndarray
    model: str
    prompt_tokens: int
    queue_ms: float
    inference_ms: float
    batch_size: int
    first_text: str = ""  # for the request log's optional text sample (EMBED_LOG_TEXT)


def engine_for(model: str | None) -> Engine:
    """Return the engine that serves `model` (aliases go to the default)."""
    registry = conf.get_registry()
    if model and model in conf.limits().model_aliases:
        return registry.get(None)
    return registry.get(model)


async def embed(job: EmbedJob) -> EmbedOutcome:
    """Validate `job` against the model, queue it in the batcher, shape the vectors.

    Raises:
        ApiError: the input is invalid for this model (4xx) - the model is not called.
        EngineError: the engine refused or failed (mapped to 429/5xx by vectors.api.errors).
    """
    engine = engine_for(job.model)
    encoder = await engine.aencoder()
    if job.dimensions is not None and job.dimensions > encoder.dimensions:
        raise InvalidRequest(
            f"dimensions={job.dimensions} exceeds the model's {encoder.dimensions}", param="dimensions"
        )
    texts = job.inputs.texts
    if texts is None:
        texts = _decode_tokens(job.inputs.token_arrays or [], encoder, job.param)
    batcher = engine.batcher()
    limit = encoder.max_seq_length
    estimated = _scheduling_estimates(texts, limit, batcher.config) if job.truncate and encoder.counts_in_call else None
    used = estimated
    if used is None:
        counts = encoder.token_counts(texts)
        if not job.truncate:
            for index, count in enumerate(counts):
                if count > limit:
                    raise InputTooLong(
                        f"{job.param}[{index}] has {count} tokens; {engine.name} takes at most {limit} "
                        "(send truncate=true to cut it)",
                        param=job.param,
                    )
        used = [min(count, limit) for count in counts]
    result = await batcher.submit(texts, used)
    if result.token_total is not None:
        tokens = result.token_total
    elif estimated is not None:  # the call did not count after all: count here, exactly
        tokens = sum(min(count, limit) for count in encoder.token_counts(texts))
    else:
        tokens = sum(used)
    normalize = encoder.normalizes if job.normalize is None else job.normalize
    if normalize and job.dimensions is None and result.unit_rows is not None:
        vectors = result.unit_rows  # what shape() would make of them, made once for the whole batch
    else:
        vectors = shape(result.rows, normalize, job.dimensions)
    return EmbedOutcome(vectors, engine.name, tokens, result.queue_ms, result.inference_ms, result.batch_size, texts[0])


def _scheduling_estimates(texts: Sequence[str], limit: int, config: BatcherConfig) -> list[int] | None:
    """Token counts for the batcher to schedule by, without tokenising on the event loop; None: count.

    Where the model call counts each text's tokens itself (the exported backends, the traced torch
    model) and the request truncates, the exact counts come back with the rows, and the batcher only
    needs lengths to order a batch by and to keep it within `max_batch_tokens`: a text's characters
    plus its two special tokens serve (a word piece spans at least one character; a tokenizer that
    splits characters further can only make a batch overrun the budget, which bounds time, not
    results). Texts long enough for the token budget to matter are counted exactly, as before.
    """
    estimates = [min(len(text) + 2, limit) for text in texts]
    if max(estimates) * config.max_batch_size > config.max_batch_tokens:
        return None
    return estimates


def _decode_tokens(arrays: list[list[int]], encoder: object, param: str) -> list[str]:
    vocab = encoder.vocab_size  # type: ignore[attr-defined]
    texts = []
    for index, ids in enumerate(arrays):
        if max(ids) >= vocab:
            raise InvalidRequest(
                f"{param}[{index}] holds token id {max(ids)}; the model's vocabulary has {vocab}", param=param
            )
        text = encoder.decode_tokens(ids)  # type: ignore[attr-defined]
        if not text.strip():
            raise InvalidRequest(f"{param}[{index}] decodes to empty text", param=param)
        texts.append(text)
    return texts


def shape(rows: np.ndarray, normalize: bool, dimensions: int | None) -> np.ndarray:
    """Cut to the first `dimensions` components (Matryoshka), then L2-normalise if asked."""
    if dimensions is not None:
        rows = rows[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(rows, dtype=np.float32)


class Stopwatch:
    """Wall time since creation in ms; the clock is replaceable for tests."""

    clock = staticmethod(time.perf_counter)

    def __init__(self) -> None:
        self.started = self.clock()

    def ms(self) -> float:
        return (self.clock() - self.started) * 1000
