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


@pytest.fixture(scope="module")
def models(model_path):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    loaded = {}
    for linear in ("torch", "onednn"):
        model = SentenceTransformer(model_path, device="cpu")
        loaded[linear] = (model, TorchRunner(model, "cpu", "fp32", jit=True, linear=linear))
    return loaded


def test_the_onednn_trace_runs_onednn_linears_and_gives_torchs_rows(models, reference):
    import torch

    model, runner = models["onednn"]
    graph = str(runner.traced.graph)
    assert runner.linear == "onednn" and graph.count("_linear_pointwise") == 36  # 6 layers x 6 Linear
    assert {"ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"} <= set(os.environ)  # set before the trace
    assert {type(m) for m in model.modules()} & {onednn.OneDnnLinear} == set()  # the model got its own back
    rows = runner(TEXTS)
    want = reference.encode(TEXTS, normalize_embeddings=False)
    assert rows.dtype == np.float32 and cosines(rows, want).min() >= 0.99999
    assert np.abs(rows - want).max() < 1e-4
    assert cosines(runner(TEXTS[3:4]), want[3:4]).min() >= 0.99999  # a batch of one, the full length
    _, plain = models["torch"]
    assert plain.linear == "torch" and "_linear_pointwise" not in str(plain.traced.graph)
    assert "aten::linear" in str(plain.traced.graph)
    assert torch.backends.mkldnn.is_available()


def test_bf16_keeps_torchs_linear_whatever_the_setting(model_path):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    runner = TorchRunner(SentenceTransformer(model_path, device="cpu"), "cpu", "bf16", jit=True, linear="onednn")
    assert runner.linear == "torch" and "_linear_pointwise" not in str(runner.traced.graph)


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


def test_onednns_kernel_caches_are_bounded_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "512")  # an operator's own choice
    onednn.bound_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64" and os.environ["LRU_CACHE_CAPACITY"] == "512"


def test_eager_torch_is_left_as_it_is(model_path):
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    runner = TorchRunner(SentenceTransformer(model_path, device="cpu"), "cpu", "fp32", jit=False, linear="onednn")
    assert runner.traced is None and runner.linear is None
