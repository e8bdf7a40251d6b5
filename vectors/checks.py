"""System checks: bad embedding configuration is refused at startup, not at request time."""

from __future__ import annotations

import os

from django.core import checks

from . import conf
from .engine import support
from .eventloop import DEFAULT as DEFAULT_LOOP
from .eventloop import LOOPS
from .serving import SERVERS

DEVICES = ("auto", "cpu", "cuda", "mps")
BACKENDS = support.BACKENDS
DTYPES = support.DTYPES


def check_runtime(entry: dict) -> list[checks.CheckMessage]:
    """Refuse a backend/dtype/device combination that cannot run, or whose package is missing."""
    name, backend = entry["NAME"], entry.get("BACKEND", "torch")
    dtype, device = entry.get("DTYPE", "fp32"), entry.get("DEVICE", "auto")
    hint = "Set EMBED_BACKEND / EMBED_DTYPE / EMBED_DEVICE, or ;backend= ;dtype= ;device= in EMBED_EXTRA_MODELS."
    if backend not in BACKENDS:
        return [checks.Error(f"model {name!r}: backend {backend!r} is not one of {BACKENDS}", id="vectors.E005")]
    if dtype not in DTYPES:
        return [checks.Error(f"model {name!r}: dtype {dtype!r} is not one of {DTYPES}", id="vectors.E006")]
    reason = support.problem(backend, dtype, device)
    if reason:
        return [checks.Error(f"model {name!r}: {reason}", hint=hint, id="vectors.E008")]
    package = support.missing_package(backend)
    if package:
        return [
            checks.Error(
                f"model {name!r}: backend {backend!r} needs the package {package!r}, which is not installed",
                hint="Install the pinned requirements (scripts/setup).",
                id="vectors.E009",
            )
        ]
    if support.device_kind(device) == "cuda":
        import torch

        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            return [
                checks.Error(
                    f"model {name!r}: device {device!r} but torch {torch.__version__} ({built}) sees no CUDA device",
                    hint="Use EMBED_DEVICE=cpu (or auto), or install a CUDA build of torch on a GPU machine.",
                    id="vectors.E010",
                )
            ]
    return []


@checks.register()
def check_embeddings(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    cfg = conf.embeddings()
    errors: list[checks.CheckMessage] = []
    names = [m["NAME"] for m in cfg["MODELS"]]
    if not names:
        errors.append(checks.Error("EMBEDDINGS['MODELS'] is empty", id="vectors.E001"))
    if len(set(names)) != len(names):
        errors.append(checks.Error(f"model names repeat: {names}", id="vectors.E002"))
    for entry in cfg["MODELS"]:
        path = entry["PATH"]
        if (os.path.isabs(path) or path.startswith(".")) and not os.path.isdir(path):
            errors.append(
                checks.Error(
                    f"model {entry['NAME']!r}: directory {path!r} does not exist",
                    hint="Set EMBED_MODEL to a model directory or hub id.",
                    id="vectors.E003",
                )
            )
        device = entry.get("DEVICE", "auto")
        if device.split(":")[0] not in DEVICES:
            errors.append(
                checks.Error(f"model {entry['NAME']!r}: device {device!r} is not one of {DEVICES}", id="vectors.E004")
            )
        errors += check_runtime(entry)
        for key in ("MAX_SEQ_LENGTH", "MAX_BATCH_SIZE", "MAX_BATCH_TOKENS"):
            # 0 or unset: the default (the model's own length, the global batch limits); below 0 a batch
            # could take no text at all and its batcher would spin on the event loop.
            if entry.get(key) is not None and entry[key] < 0:
                message = f"model {entry['NAME']!r}: {key.lower()} must be > 0 (0: the default), got {entry[key]}"
                errors.append(checks.Error(message, id="vectors.E007"))
    positive = [
        "MAX_BATCH_SIZE",
        "MAX_BATCH_TOKENS",
        "MAX_QUEUE_INPUTS",
        "QUEUE_TIMEOUT_MS",
        "INFERENCE_TIMEOUT_MS",
        "MAX_INPUTS_PER_REQUEST",
        "MAX_INPUT_CHARS",
        "MAX_BODY_BYTES",
        "WS_MAX_INFLIGHT",
    ]
    for key in positive:
        if cfg[key] <= 0:
            errors.append(checks.Error(f"EMBEDDINGS[{key!r}] must be > 0, got {cfg[key]}", id="vectors.E007"))
    if cfg["MAX_WAIT_MS"] < 0:
        errors.append(checks.Error("EMBEDDINGS['MAX_WAIT_MS'] must be >= 0", id="vectors.E007"))
    if cfg.get("SERVER", "daphne") not in SERVERS:
        expected = " or ".join(SERVERS)
        errors.append(checks.Error(f"EMBED_SERVER={cfg['SERVER']!r}: expected {expected}", id="vectors.E007"))
    if cfg.get("EVENT_LOOP", DEFAULT_LOOP) not in LOOPS:
        expected = " or ".join(LOOPS)
        errors.append(checks.Error(f"EMBED_EVENT_LOOP={cfg['EVENT_LOOP']!r}: expected {expected}", id="vectors.E007"))
    if cfg.get("TORCH_LINEAR", "auto") not in support.TORCH_LINEAR:
        expected = " or ".join(support.TORCH_LINEAR)
        message = f"EMBED_TORCH_LINEAR={cfg['TORCH_LINEAR']!r}: expected {expected}"
        errors.append(checks.Error(message, id="vectors.E007"))
    for key in ("PARALLEL_BATCHES", "SPLIT_MIN_INPUTS", "TORCH_THREADS"):
        if cfg.get(key) is not None and cfg[key] < 0:
            errors.append(
                checks.Error(f"EMBEDDINGS[{key!r}] must be >= 0 (0: automatic), got {cfg[key]}", id="vectors.E007")
            )
    if cfg["MAX_QUEUE_INPUTS"] < cfg["MAX_INPUTS_PER_REQUEST"]:
        errors.append(
            checks.Warning(
                "MAX_QUEUE_INPUTS is below MAX_INPUTS_PER_REQUEST: a full-size request can only enter an empty queue",
                id="vectors.W001",
            )
        )
    return errors


@checks.register()
def check_request_log(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """The request-log recorder's knobs (EMBED_LOG_*): sizes and intervals must make sense."""
    log = conf.log_config()
    errors: list[checks.CheckMessage] = []
    for name, value in (
        ("EMBED_LOG_BUFFER_ROWS", log.buffer_rows),
        ("EMBED_LOG_FLUSH_ROWS", log.flush_rows),
        ("EMBED_LOG_FLUSH_MS", log.flush_ms),
        ("EMBED_LOG_RETRY_MAX_MS", log.retry_max_ms),
    ):
        if value <= 0:
            errors.append(checks.Error(f"{name} must be > 0, got {value}", id="vectors.E020"))
    for name, value in (("EMBED_LOG_STOP_TIMEOUT_S", log.stop_timeout_s), ("EMBED_LOG_MAX_ROWS", log.max_rows)):
        if value < 0:
            errors.append(checks.Error(f"{name} must be >= 0, got {value}", id="vectors.E021"))
    if 0 < log.buffer_rows < log.flush_rows:
        errors.append(
            checks.Warning(
                "EMBED_LOG_FLUSH_ROWS is above EMBED_LOG_BUFFER_ROWS: batches only ever leave by time",
                id="vectors.W020",
            )
        )
    return errors
