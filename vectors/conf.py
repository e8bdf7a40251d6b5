"""The one reader of settings.EMBEDDINGS: typed limits and the process-wide model registry."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    require_api_key: bool
    api_key_cache_s: float
    rate_limit_per_key: float
    rate_limit_burst: int
    ws_max_inflight: int = 32


@dataclass(frozen=True)
class LogConfig:
    """How the request log is written (vectors.recorder) and bounded.

    enabled: log one RequestLog row per request at all.
    buffer_rows: rows that may wait for the database; past it new rows are dropped and counted,
        so a dead database costs bounded memory instead of the service.
    flush_rows / flush_ms: the writer inserts as soon as this many rows wait, or at the latest
        after this long: bigger batches are cheaper per row, rows show up later.
    retry_max_ms: longest pause between attempts while the database is busy or down.
    stop_timeout_s: how long a normal stop may wait for the last rows to reach the database.
    log_text: keep a truncated copy of the first input (off: inputs may be private).
    max_rows: keep at most this many rows (oldest go first); 0 = no bound.
    """

    enabled: bool = True
    buffer_rows: int = 10_000
    flush_rows: int = 500
    flush_ms: float = 1000.0
    retry_max_ms: float = 30_000.0
    stop_timeout_s: float = 5.0
    log_text: bool = False
    max_rows: int = 0
    database: str = "default"


def embeddings() -> dict:
    return settings.EMBEDDINGS


def log_config() -> LogConfig:
    """Return the request-log settings."""
    cfg = embeddings()
    return LogConfig(
        enabled=cfg.get("LOG_REQUESTS", True),
        buffer_rows=cfg.get("LOG_BUFFER_ROWS", 10_000),
        flush_rows=cfg.get("LOG_FLUSH_ROWS", 500),
        flush_ms=cfg.get("LOG_FLUSH_MS", 1000.0),
        retry_max_ms=cfg.get("LOG_RETRY_MAX_MS", 30_000.0),
        stop_timeout_s=cfg.get("LOG_STOP_TIMEOUT_S", 5.0),
        log_text=cfg.get("LOG_TEXT", False),
        max_rows=cfg.get("LOG_MAX_ROWS", 0),
    )


def metrics_multiproc_dir() -> str:
    """Return the prometheus_client multiprocess directory ('' when one process serves)."""
    return embeddings().get("PROMETHEUS_MULTIPROC_DIR", "")


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
        require_api_key=cfg.get("REQUIRE_API_KEY", False),
        api_key_cache_s=cfg.get("API_KEY_CACHE_S", 30.0),
        rate_limit_per_key=cfg.get("RATE_LIMIT_PER_KEY", 0.0),
        rate_limit_burst=cfg.get("RATE_LIMIT_BURST", 0),
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
        split_min_inputs=cfg.get("SPLIT_MIN_INPUTS", 8),
    )


def model_configs() -> list[ModelConfig]:
    """Return one ModelConfig per served model; an entry's own batch limits override the global ones."""
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
            parallel_batches=cfg.get("PARALLEL_BATCHES"),
            torch_jit=cfg.get("TORCH_JIT", True),
            torch_linear=cfg.get("TORCH_LINEAR", "auto"),
            warmup=cfg.get("WARMUP", True),
            batcher=replace(
                batcher,
                max_batch_size=entry.get("MAX_BATCH_SIZE") or batcher.max_batch_size,
                max_batch_tokens=entry.get("MAX_BATCH_TOKENS") or batcher.max_batch_tokens,
            ),
            cache_dir=cfg.get("CACHE_DIR", ""),
            hub_cache_dir=cfg.get("HUB_CACHE_DIR"),
        )
        for entry in cfg["MODELS"]
    ]


_registry: Registry | None = None
_from_settings: Registry | None = None  # the one get_registry() made from settings; only it follows them


def get_registry() -> Registry:
    """Return the process-wide registry of served models (models load lazily)."""
    global _registry, _from_settings
    if _registry is None:
        from . import metrics

        _registry = _from_settings = Registry(model_configs(), on_batch=metrics.observe_batch)
        metrics.declare_models(_registry.names)
    return _registry


def set_registry(registry: Registry | None) -> None:
    """Replace the registry (tests inject one with a fake or poisoned encoder)."""
    global _registry
    _registry = registry


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: object) -> None:
    global _from_settings
    if setting == "EMBEDDINGS":
        limits.cache_clear()
        # The registry made from the old settings is closed, not only dropped: its batcher's task would
        # wait on forever and be destroyed pending. One installed with set_registry is its installer's.
        if _registry is not None and _registry is _from_settings:
            _registry.close()
            _from_settings = None
        set_registry(None)
