"""manage.py prepare_model (export once, then reuse) and manage.py embedquality (the quality guard)."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings


def settings_with(cache_dir: str, *entries: dict) -> override_settings:
    cfg = copy.deepcopy(settings.EMBEDDINGS)
    main = cfg["MODELS"][0]
    cfg["MODELS"] = [{**main, **entry} for entry in entries]
    cfg["CACHE_DIR"] = cache_dir
    return override_settings(EMBEDDINGS=cfg)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_prepare_model_exports_once_then_finds_the_artifact_and_holds_it_to_the_quality_guard(tmp_path, monkeypatch):
    from vectors.quality import guard

    with settings_with(str(tmp_path), {"NAME": "plain"}, {"NAME": "fast", "BACKEND": "onnx", "DTYPE": "int8"}):
        first = run("prepare_model")
        second = run("prepare_model", "--model", "fast", "--skip-quality")
        monkeypatch.setitem(guard.TOLERANCES, "int8", guard.Tolerance(0.99999, 0.9999, 1.0))  # out of int8's reach
        corpus = guard.quality_corpus()
        monkeypatch.setattr(guard, "quality_corpus", lambda: corpus[:40])  # enough to fall short of it, in less time
        with pytest.raises(CommandError, match="below the quality tolerance: fast"):
            run("prepare_model", "--model", "fast")
    assert "plain: torch fp32 on cpu: nothing to export" in first
    assert "fast: onnx int8 on cpu: exported (2 steps)" in first and str(tmp_path) in first
    # The int8 model is held to the guard; torch fp32 is the reference itself.
    [row] = [line for line in first.splitlines() if line.startswith("fast ")]
    assert " ok " in row and "onnx" in row and "int8" in row
    assert not any(line.startswith("plain ") for line in first.splitlines())
    assert "fast: onnx int8 on cpu: already prepared" in second and "plain" not in second
    assert "quality" not in second


def test_prepare_model_refuses_an_unknown_name(tmp_path):
    with settings_with(str(tmp_path), {"NAME": "plain"}), pytest.raises(CommandError, match="unknown model"):
        run("prepare_model", "--model", "nope")


def test_embedquality_reports_each_model_against_torch_fp32(tmp_path):
    with settings_with(str(tmp_path), {"NAME": "onnx32", "BACKEND": "onnx", "DTYPE": "fp32", "DEVICE": "cpu"}):
        report = run("embedquality", "--texts", "60")
    assert "60 texts" in report
    [row] = [line for line in report.splitlines() if line.startswith("onnx32")]
    assert " ok " in row and "1.00000" in row
