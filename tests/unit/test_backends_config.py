"""Per-model backend/dtype/device settings and the system checks that refuse what cannot run."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from embedservice import settings as project_settings
from vectors import checks, conf
from vectors.engine import support


def with_models(*entries: dict) -> override_settings:
    cfg = copy.deepcopy(settings.EMBEDDINGS)
    main = cfg["MODELS"][0]
    cfg["MODELS"] = [{**main, **entry} for entry in entries]
    return override_settings(EMBEDDINGS=cfg)


def errors_for(*entries: dict) -> list:
    with with_models(*entries):
        return [e for e in checks.check_embeddings() if e.level >= 40]


def test_fp16_on_cpu_is_refused_by_a_system_check_that_says_why():
    [error] = errors_for({"DTYPE": "fp16", "DEVICE": "cpu"})
    assert error.id == "vectors.E008"
    assert "CUDA only" in error.msg and "bf16" in error.msg and "int8" in error.msg


def test_fp16_with_device_auto_must_name_cuda_explicitly():
    [error] = errors_for({"DTYPE": "fp16", "DEVICE": "auto"})
    assert error.id == "vectors.E008" and "set the device to cuda" in error.msg


def test_cuda_on_a_machine_without_cuda_is_refused_at_startup():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    [error] = errors_for({"DTYPE": "fp16", "DEVICE": "cuda"})
    assert error.id == "vectors.E010" and "sees no CUDA device" in error.msg


@pytest.mark.parametrize(
    ("backend", "dtype", "device", "needle"),
    [
        ("onnx", "bf16", "cpu", "does not run dtype 'bf16'"),
        ("torch", "int8", "cpu", "backend=onnx"),
        ("onnx", "int8", "cuda", "does not run on 'cuda'"),
        ("tensorrt", "fp32", "cpu", "is not one of"),
    ],
)
def test_combinations_that_cannot_run_are_refused(backend, dtype, device, needle):
    [error] = errors_for({"BACKEND": backend, "DTYPE": dtype, "DEVICE": device})
    assert needle in error.msg


def test_supported_cpu_combinations_pass_the_checks():
    assert (
        errors_for(
            {"NAME": "a"},
            {"NAME": "b", "BACKEND": "onnx", "DTYPE": "int8", "DEVICE": "cpu"},
            {"NAME": "c", "BACKEND": "openvino", "DTYPE": "fp32"},
            {"NAME": "d", "BACKEND": "torch", "DTYPE": "bf16"},
        )
        == []
    )


def test_a_missing_backend_package_is_named(monkeypatch):
    monkeypatch.setattr(support, "missing_package", lambda backend: "onnxruntime")
    [error] = errors_for({"BACKEND": "onnx", "DTYPE": "int8"})
    assert error.id == "vectors.E009" and "'onnxruntime'" in error.msg


def test_extra_models_carry_their_own_backend_dtype_device_and_batch_limits(monkeypatch):
    monkeypatch.setattr(project_settings, "env", {"EMBED_BACKEND": "torch", "EMBED_DTYPE": "fp32"})
    entry = project_settings.extra_model_entry(
        "mini-int8=/models/mini;backend=onnx;dtype=int8;device=cpu;max_batch_size=64", "/main"
    )
    assert entry["NAME"] == "mini-int8" and entry["PATH"] == "/models/mini"
    assert (entry["BACKEND"], entry["DTYPE"], entry["DEVICE"], entry["MAX_BATCH_SIZE"]) == ("onnx", "int8", "cpu", 64)


def test_an_extra_model_without_a_path_serves_the_main_models_weights(monkeypatch):
    monkeypatch.setattr(project_settings, "env", {"EMBED_DEVICE": "cpu"})
    entry = project_settings.extra_model_entry("fast ; backend=openvino", "/main")
    assert (entry["NAME"], entry["PATH"], entry["BACKEND"], entry["DEVICE"]) == ("fast", "/main", "openvino", "cpu")
    assert entry["DTYPE"] == "fp32"  # EMBED_* stay the defaults of every model


@pytest.mark.parametrize("item", ["=path", "x;colour=blue", "x;backend", "x;max_batch_size=lots"])
def test_a_malformed_extra_model_item_is_refused(monkeypatch, item):
    monkeypatch.setattr(project_settings, "env", {})
    with pytest.raises(ImproperlyConfigured, match="EMBED_EXTRA_MODELS"):
        project_settings.extra_model_entry(item, "/main")


@pytest.mark.parametrize("key", ["MAX_SEQ_LENGTH", "MAX_BATCH_SIZE", "MAX_BATCH_TOKENS"])
def test_a_negative_per_model_length_or_batch_limit_is_refused_at_startup_and_zero_means_the_default(key):
    [error] = errors_for({"NAME": "small", key: -1})
    assert error.id == "vectors.E007" and f"model 'small': {key.lower()} must be > 0" in error.msg
    assert errors_for({"NAME": "small", key: 0}) == []


def test_model_configs_take_per_model_batch_limits_and_the_cache_dir():
    with with_models({"NAME": "a"}, {"NAME": "b", "BACKEND": "onnx", "DTYPE": "int8", "MAX_BATCH_SIZE": 16}):
        a, b = conf.model_configs()
    assert a.batcher.max_batch_size == settings.EMBEDDINGS["MAX_BATCH_SIZE"]
    assert (b.backend, b.dtype, b.batcher.max_batch_size) == ("onnx", "int8", 16)
    assert b.batcher.max_batch_tokens == a.batcher.max_batch_tokens
    assert a.cache_dir == settings.EMBEDDINGS["CACHE_DIR"] and a.cache_dir.endswith("models")


def test_a_model_on_cuda_gets_gpu_sized_batches_unless_told_otherwise(monkeypatch):
    monkeypatch.setattr(project_settings, "env", {})
    gpu = project_settings.with_batch_defaults(project_settings.extra_model_entry("g;device=cuda", "/m"))
    cpu = project_settings.with_batch_defaults(project_settings.extra_model_entry("c;device=cpu", "/m"))
    own = project_settings.with_batch_defaults(
        project_settings.extra_model_entry("o;device=cuda:1;max_batch_size=64", "/m")
    )
    assert (gpu["MAX_BATCH_SIZE"], gpu["MAX_BATCH_TOKENS"]) == (512, 65536)
    assert "MAX_BATCH_SIZE" not in cpu
    assert (own["MAX_BATCH_SIZE"], own["MAX_BATCH_TOKENS"]) == (64, 65536)
    monkeypatch.setattr(project_settings, "env", {"EMBED_MAX_BATCH_SIZE": "256"})
    assert "MAX_BATCH_SIZE" not in project_settings.with_batch_defaults(
        project_settings.extra_model_entry("g;device=cuda", "/m")
    )


def test_an_onnx_model_on_the_cpu_batches_up_to_128_texts_unless_told_otherwise(monkeypatch):
    monkeypatch.setattr(project_settings, "env", {})
    onnx = project_settings.with_batch_defaults(project_settings.extra_model_entry("o;backend=onnx;dtype=int8", "/m"))
    torch = project_settings.with_batch_defaults(project_settings.extra_model_entry("t;device=cpu", "/m"))
    own = project_settings.with_batch_defaults(
        project_settings.extra_model_entry("o;backend=onnx;max_batch_size=32", "/m")
    )
    assert onnx["MAX_BATCH_SIZE"] == project_settings.ONNX_MAX_BATCH_SIZE == 128
    assert "MAX_BATCH_SIZE" not in torch  # the global default (64)
    assert own["MAX_BATCH_SIZE"] == 32
    monkeypatch.setattr(project_settings, "env", {"EMBED_MAX_BATCH_SIZE": "48"})
    assert "MAX_BATCH_SIZE" not in project_settings.with_batch_defaults(
        project_settings.extra_model_entry("o;backend=onnx", "/m")
    )


def test_native_bf16_is_read_from_the_cpu_flags():
    from vectors.engine.support import cpu_has_bf16

    assert cpu_has_bf16("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n") is False
    assert cpu_has_bf16("flags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n") is True
    assert cpu_has_bf16("flags\t\t: fpu amx_bf16 amx_tile\n") is True
    assert cpu_has_bf16("Features\t: fp asimd bf16 i8mm\n") is True  # Arm
    assert cpu_has_bf16("processor\t: 0\n") is None


def test_int8_dot_product_instructions_are_read_from_the_cpu_flags():
    from vectors.engine.support import cpu_has_int8_dot

    assert cpu_has_int8_dot("flags\t\t: fpu fma avx avx2 sha_ni\n") is False  # Zen 3: AVX2 only
    assert cpu_has_int8_dot("flags\t\t: fpu avx2 avx512f avx512_vnni\n") is True
    assert cpu_has_int8_dot("flags\t\t: fpu avx2 avx_vnni\n") is True
    assert cpu_has_int8_dot("flags\t\t: fpu amx_int8 amx_tile\n") is True
    assert cpu_has_int8_dot("Features\t: fp asimd asimddp\n") is True  # Arm
    assert cpu_has_int8_dot("processor\t: 0\n") is None


def test_openvino_int8_on_a_cpu_without_int8_dot_products_warns_and_names_onnx_int8(
    model_path, tmp_path, monkeypatch, caplog
):
    from vectors.engine import support
    from vectors.engine.config import ModelConfig
    from vectors.engine.encoder import Encoder

    config = ModelConfig(
        "o8", model_path, device="cpu", backend="openvino", dtype="int8", cache_dir=str(tmp_path), warmup=False
    )
    monkeypatch.setattr(support, "cpu_has_int8_dot", lambda: False)
    with caplog.at_level("WARNING", logger="vectors.engine.backends"):
        Encoder(config)
    assert any("dot-product" in r.getMessage() and "onnx" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setattr(support, "cpu_has_int8_dot", lambda: True)
    with caplog.at_level("WARNING", logger="vectors.engine.backends"):
        Encoder(config)
    assert not any("dot-product" in r.getMessage() for r in caplog.records)


def test_torch_bf16_on_a_cpu_without_bf16_warns_that_it_is_emulated(model_path, monkeypatch, caplog):
    from vectors.engine import support
    from vectors.engine.config import ModelConfig
    from vectors.engine.encoder import Encoder

    monkeypatch.setattr(support, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="vectors.engine.backends"):
        Encoder(ModelConfig("b", model_path, device="cpu", dtype="bf16", torch_jit=False, warmup=False))
    assert any("emulated" in r.getMessage() and "int8" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setattr(support, "cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="vectors.engine.backends"):
        Encoder(ModelConfig("b", model_path, device="cpu", dtype="bf16", torch_jit=False, warmup=False))
    assert not any("emulated" in r.getMessage() for r in caplog.records)
