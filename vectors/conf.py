"""The one reader of settings.EMBEDDINGS: typed limits and the process-wide model registry."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .engine.config import BatcherConfig, ModelConfig
from .engine.registry import Registry


@dataclass(frozen=True)
class ApiLimits:
    """Per-request limits the API enforces before the model is called."""

    max_inputs_per_request: int
    max_input_chars: int
    max_body_bytes: int
    retry_after_s: int
    bench_views: bool
    model_aliases: tuple[str, ...]
    fast_path: bool
    ws_max_inflight: int = 32


def embeddings() -> dict:
    return settings.EMBEDDINGS


@lru_cache(maxsize=1)
def limits() -> ApiLimits:
    """Return the API limits from settings (cached; reset when settings change in tests)."""
    cfg = embeddings()
    return ApiLimits(
        max_inputs_per_request=cfg["MAX_INPUTS_PER_REQUEST"],
        max_input_chars=cfg["MAX_INPUT_CHARS"],
        max_body_bytes=cfg["MAX_BODY_BYTES"],
        retry_after_s=cfg["RETRY_AFTER_S"],
        bench_views=cfg["BENCH_VIEWS"],
        model_aliases=tuple(cfg.get("MODEL_ALIASES", ())),
        fast_path=cfg.get("FAST_PATH", True),
        ws_max_inflight=cfg.get("WS_MAX_INFLIGHT", 32),
    )


def batcher_config() -> BatcherConfig:
    cfg = embeddings()
    return BatcherConfig(
        max_batch_size=cfg["MAX_BATCH_SIZE"],
        max_batch_tokens=cfg["MAX_BATCH_TOKENS"],
        max_queue_inputs=cfg["MAX_QUEUE_INPUTS"],
        queue_timeout_ms=cfg["QUEUE_TIMEOUT_MS"],
        inference_timeout_ms=cfg["INFERENCE_TIMEOUT_MS"],
        max_wait_ms=cfg["MAX_WAIT_MS"],
    )


def model_configs() -> list[ModelConfig]:
    cfg = embeddings()
    batcher = batcher_config()
    return [
        ModelConfig(
            name=entry["NAME"],
            path=entry["PATH"],
            device=entry.get("DEVICE", "auto"),
            backend=entry.get("BACKEND", "torch"),
            dtype=entry.get("DTYPE", "fp32"),
            max_seq_length=entry.get("MAX_SEQ_LENGTH"),
            torch_threads=cfg.get("TORCH_THREADS"),
            warmup=cfg.get("WARMUP", True),
            batcher=batcher,
        )
        for entry in cfg["MODELS"]
    ]


_registry: Registry | None = None


def get_registry() -> Registry:
    """Return the process-wide registry of served models (models load lazily)."""
    global _registry
    if _registry is None:
        from . import metrics

        _registry = Registry(model_configs(), on_batch=metrics.observe_batch)
    return _registry


def set_registry(registry: Registry | None) -> None:
    """Replace the registry (tests inject one with a fake or poisoned encoder)."""
    global _registry
    _registry = registry


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "EMBEDDINGS":
        limits.cache_clear()
        set_registry(None)
