"""torch's fp32 Linear layers on oneDNN (EMBED_TORCH_LINEAR): which CPUs take it, and that the rows stay the same."""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import pytest
from django.conf import settings
from django.test import override_settings

from tests.conftest import cosines
from vectors import checks
from vectors.engine import onednn
from vectors.engine.errors import ModelLoadError

AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: avx512f avx512_vnni\n"
AMD_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nflags\t\t: avx avx2 fma\n"  # Zen 3
INTEL = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: avx512f amx_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16\nCPU implementer\t: 0x41\n"
TEXTS = [
    "a short text",
    "Ein Satz auf Deutsch, etwas länger als der erste, damit die Stapel aufgefüllt werden.",
    "日本語の文です。",
    "word " * 400,  # the full 256 tokens
    *(f"sentence {i} about subject {i % 7}" for i in range(24)),
]


@pytest.mark.parametrize(
    ("choice", "cpuinfo", "machine", "expected"),
    [
        ("auto", AMD, "x86_64", "onednn"),  # MKL does not take its AVX-512 path on AMD
        ("auto", AMD_AVX2, "x86_64", "torch"),  # no AVX-512 for MKL to leave unused; not measured
        ("auto", INTEL, "x86_64", "torch"),  # MKL's own vendor: torch's default
        ("auto", ARM, "aarch64", "torch"),  # no MKL on Arm builds
        ("auto", "", "x86_64", "torch"),  # cannot tell the vendor
        ("torch", AMD, "x86_64", "torch"),
        ("onednn", INTEL, "x86_64", "onednn"),
    ],
)
def test_the_setting_resolves_by_cpu_vendor_unless_named(choice, cpuinfo, machine, expected):
    assert onednn.resolve(choice, cpuinfo=cpuinfo, machine=machine) == expected


def test_a_torch_without_onednn_keeps_its_own_linear_and_refuses_an_explicit_onednn(monkeypatch):
    monkeypatch.setattr(onednn, "available", lambda: False)
    assert onednn.resolve("auto", cpuinfo=AMD, machine="x86_64") == "torch"
    with pytest.raises(ModelLoadError, match="no oneDNN"):
        onednn.resolve("onednn", cpuinfo=AMD, machine="x86_64")


def test_an_unknown_choice_is_refused_at_load_and_by_the_system_check():
    with pytest.raises(ModelLoadError, match="'mkl' is not one of"):
        onednn.resolve("mkl")
    cfg = {**copy.deepcopy(settings.EMBEDDINGS), "TORCH_LINEAR": "mkl"}
    with override_settings(EMBEDDINGS=cfg):
        errors = [e for e in checks.check_embeddings() if e.level >= 40]
    assert [(e.id, "EMBED_TORCH_LINEAR='mkl'" in e.msg) for e in errors] == [("vectors.E007", True)]


needs_onednn = pytest.mark.skipif(not onednn.available(), reason="this torch build has no oneDNN")


@pytest.fixture(scope="module")
def models(model_path):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    loaded = {}
    for linear in ("torch", "onednn"):
        model = SentenceTransformer(model_path, device="cpu")
        loaded[linear] = (model, TorchRunner(model, "cpu", "fp32", jit=True, linear=linear))
    return loaded


@needs_onednn
def test_the_onednn_trace_runs_onednn_linears_and_gives_torchs_rows(models, reference):
    model, runner = models["onednn"]
    graph = str(runner.traced.graph)
    assert runner.linear == "onednn" and graph.count("_linear_pointwise") == 36  # 6 layers x 6 Linear
    assert {type(m) for m in model.modules()} & {onednn.OneDnnLinear} == set()  # the model got its own back
    rows = runner(TEXTS)
    want = reference.encode(TEXTS, normalize_embeddings=False)
    assert rows.dtype == np.float32 and cosines(rows, want).min() >= 0.99999
    assert np.abs(rows - want).max() < 1e-4
    assert cosines(runner(TEXTS[3:4]), want[3:4]).min() >= 0.99999  # a batch of one, the full length
    _, plain = models["torch"]
    assert plain.linear == "torch" and "_linear_pointwise" not in str(plain.traced.graph)
    assert "aten::linear" in str(plain.traced.graph)


@needs_onednn
def test_bf16_keeps_torchs_linear_whatever_the_setting(model_path):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    runner = TorchRunner(SentenceTransformer(model_path, device="cpu"), "cpu", "bf16", jit=True, linear="onednn")
    assert runner.linear == "torch" and "_linear_pointwise" not in str(runner.traced.graph)


@needs_onednn
def test_a_onednn_trace_that_fails_is_traced_again_with_torchs_linear(model_path, reference, monkeypatch, caplog):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    def broken(x, weight, bias):  # noqa: ANN001, ANN202 - stands in for a oneDNN that gives wrong rows
        return -onednn.torch.nn.functional.linear(x, weight, bias)

    monkeypatch.setattr(onednn.OneDnnLinear, "forward", lambda self, x: broken(x, self.weight, self.bias))
    caplog.set_level(logging.WARNING)
    runner = TorchRunner(SentenceTransformer(model_path, device="cpu"), "cpu", "fp32", jit=True, linear="onednn")
    assert runner.traced is not None and runner.linear == "torch"
    assert "oneDNN Linear layers failed" in caplog.text and "runs eagerly" not in caplog.text
    want = reference.encode(TEXTS[:4], normalize_embeddings=False)
    assert cosines(runner(TEXTS[:4]), want).min() >= 0.99999


@needs_onednn
def test_the_model_gets_its_own_linears_back_when_the_trace_raises_within_the_swap(model_path, monkeypatch, caplog):
    import torch
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("this module cannot be traced")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    model = SentenceTransformer(model_path, device="cpu")
    before = [(name, module) for name, module in model.named_modules() if type(module) is torch.nn.Linear]
    runner = TorchRunner(model, "cpu", "fp32", jit=True, linear="onednn")
    assert runner.traced is None and runner.linear is None and "runs eagerly" in caplog.text
    assert not [m for m in model.modules() if isinstance(m, onednn.OneDnnLinear)]
    after = [(name, module) for name, module in model.named_modules() if type(module) is torch.nn.Linear]
    assert len(before) >= 36 and [(n, id(m)) for n, m in after] == [(n, id(m)) for n, m in before]  # the same ones


@needs_onednn
def test_a_trace_with_nothing_swapped_is_not_said_to_run_on_onednn(model_path, monkeypatch):
    import contextlib

    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    # As for a model whose layers are not plain nn.Linear: the swap finds nothing to replace.
    monkeypatch.setattr(onednn, "linears_on_onednn", lambda module: contextlib.nullcontext(0))
    runner = TorchRunner(SentenceTransformer(model_path, device="cpu"), "cpu", "fp32", jit=True, linear="onednn")
    assert runner.traced is not None and runner.linear == "torch"
    assert "_linear_pointwise" not in str(runner.traced.graph)


@pytest.mark.parametrize(("dtype", "linear"), [pytest.param("fp32", "onednn", marks=needs_onednn), ("bf16", "torch")])
def test_the_models_on_onednn_leave_its_kernel_caches_at_their_defaults(model_path, monkeypatch, dtype, linear):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    # Held to 64 shapes these cost 8 % of served throughput (vectors.engine.onednn); an operator may set them.
    names = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    TorchRunner(SentenceTransformer(model_path, device="cpu"), "cpu", dtype, jit=True, linear=linear)
    assert {name: os.environ.get(name) for name in names} == dict.fromkeys(names)


def test_eager_torch_is_left_as_it_is(model_path):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    runner = TorchRunner(SentenceTransformer(model_path, device="cpu"), "cpu", "fp32", jit=False, linear="onednn")
    assert runner.traced is None and runner.linear is None
