"""The export cache (vectors.engine.export): what keys an artifact, where it lives, and how a damaged one heals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import cosines
from vectors.engine import artifacts, export
from vectors.engine.config import ModelConfig
from vectors.engine.encoder import Encoder
from vectors.engine.errors import ArtifactUnreadable, ModelLoadError

REPO = "example-org/minilm"
OLD = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
NEW = "fa97f6e7cb1a59073dff9e6b13e2715cf7475ac9"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of this test's own, offline: nothing is ever downloaded."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)  # else sentence-transformers caches there
    # huggingface_hub reads these once, at import; the loaders read the module's values on every call.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def add_snapshot(cache: Path, repo: str, revision: str, model_path: str) -> Path:
    """Lay out the packaged model as `repo` at `revision`, as a hub download leaves it (refs/main names it)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    for file in Path(model_path).rglob("*"):
        if file.is_file():
            link = snapshot / file.relative_to(model_path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(file)  # the hub cache links each file to a blob; here the blob is the packaged file
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    return snapshot


def test_a_hub_id_gets_a_new_artifact_when_its_cached_snapshot_moves_to_a_new_revision(
    model_path, hub_cache, tmp_path, reference
):
    cache_dir = str(tmp_path / "artifacts")
    uncached = artifacts.artifact_dir(REPO, "onnx-fp32", cache_dir)  # not in the cache: keyed by its name alone
    add_snapshot(hub_cache, REPO, OLD, model_path)
    config = ModelConfig("hub", REPO, device="cpu", backend="onnx", cache_dir=cache_dir)
    before = export.exports["onnx-fp32"]
    first = Encoder(config)
    add_snapshot(hub_cache, REPO, NEW, model_path)  # a new revision: refs/main now names it
    second = Encoder(config)
    assert export.exports["onnx-fp32"] == before + 2  # the artifact of the old snapshot is not reused
    assert len({first.artifact, second.artifact, str(uncached / artifacts.ARTIFACT)}) == 3
    (hub_cache / f"models--{REPO.replace('/', '--')}" / "refs" / "main").write_text(OLD)
    assert artifacts.artifact_dir(REPO, "onnx-fp32", cache_dir) == Path(first.artifact).parent  # stable per revision
    texts = ["a snapshot of its own", "eine neue Revision"]
    assert cosines(second.encode(texts), reference.encode(texts)).min() >= 0.9999


def test_a_hub_id_under_sentence_transformers_home_is_keyed_by_the_snapshot_it_loads_from(
    model_path, hub_cache, tmp_path, reference
):
    home = str(tmp_path / "st-home")  # SENTENCE_TRANSFORMERS_HOME: hub models are cached here, not in HF's cache
    cache_dir = str(tmp_path / "artifacts")
    by_name = artifacts.artifact_key(REPO, "onnx-fp32", home)  # not cached anywhere: keyed by its name alone
    add_snapshot(Path(home), REPO, OLD, model_path)
    config = ModelConfig("hub", REPO, device="cpu", backend="onnx", cache_dir=cache_dir, hub_cache_dir=home)
    first = Encoder(config)  # sentence-transformers loads it from home (HF's cache is empty and offline)
    new = add_snapshot(Path(home), REPO, NEW, model_path)  # the same name, a new revision: refs/main names it
    second = Encoder(config)
    assert first.artifact != second.artifact  # the old snapshot's artifact is not reused
    assert by_name[:16] not in first.artifact + second.artifact  # each keyed by its snapshot, not the name
    assert artifacts.hub_snapshot(REPO, home) == new and artifacts.hub_snapshot(REPO) is None
    assert not any(hub_cache.glob("models--*"))
    texts = ["a snapshot of its own", "eine neue Revision"]
    assert cosines(second.encode(texts), reference.encode(texts)).min() >= 0.9999


def test_sentence_transformers_home_reaches_every_model_config(tmp_path):
    import subprocess
    import sys

    from django.conf import settings

    show = (
        "import django\ndjango.setup()\n"
        "from vectors import conf\nprint({c.hub_cache_dir for c in conf.model_configs()})"
    )
    env = {**os.environ, "SENTENCE_TRANSFORMERS_HOME": str(tmp_path), "DJANGO_SETTINGS_MODULE": "embedservice.settings"}
    shown = subprocess.run([sys.executable, "-c", show], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True)
    assert shown.stdout.strip() == repr({str(tmp_path)}), shown.stderr[-2000:]


def test_a_bare_hub_name_is_keyed_by_its_snapshot_under_the_sentence_transformers_organisation(model_path, hub_cache):
    name = "paraphrase-multilingual-MiniLM-L12-v2"  # SentenceTransformer(name) loads sentence-transformers/<name>
    add_snapshot(hub_cache, f"sentence-transformers/{name}", OLD, model_path)
    old_key = artifacts.artifact_key(name, "onnx-fp32")
    add_snapshot(hub_cache, f"sentence-transformers/{name}", NEW, model_path)
    assert artifacts.artifact_key(name, "onnx-fp32") != old_key


def matmul_graph() -> bytes:
    """A small valid ONNX graph with one constant MatMul weight, serialised."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((8, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def fp32_export(source: Path, graph: bytes) -> Path:
    """Write `graph` as a finished fp32 export at `source` (its meta.json beside it)."""
    source.write_bytes(graph)
    (source.parent / artifacts.META).write_text(json.dumps({"inputs": ["x"]}))
    return source


@pytest.mark.parametrize("damage", ["graph cut short", "graph file empty", "meta.json damaged"])
def test_a_damaged_fp32_export_is_unreadable_to_the_int8_rewrite(damage, tmp_path):
    source = tmp_path / "fp32" / artifacts.ARTIFACT
    source.parent.mkdir()
    graph = matmul_graph()
    export.quantize_file(fp32_export(source, graph), tmp_path / "whole.onnx", "onnx-int8")  # the undamaged one rewrites
    if damage == "graph cut short":
        source.write_bytes(graph[: len(graph) // 2])
    elif damage == "graph file empty":
        source.write_bytes(b"")  # parses as an empty model: no graph at all
    else:
        (source.parent / artifacts.META).write_text('{"inputs": ["x"')
    with pytest.raises(ArtifactUnreadable):
        export.quantize_file(source, tmp_path / "int8.onnx", "onnx-int8")


def test_an_int8_artifact_over_a_damaged_fp32_export_exports_the_fp32_source_again_once(
    model_path, tmp_path, reference, caplog
):
    cache_dir = str(tmp_path)
    inputs = {"inputs": ["input_ids", "attention_mask", "token_type_ids"]}
    # Both "complete" (meta.json there) but damaged, as a crash or a bad disk leaves them: the int8
    # artifact must be rebuilt, and the fp32 export it is rebuilt from does not load either.
    for variant in ("onnx-fp32", "onnx-int8"):
        target = artifacts.artifact_dir(model_path, variant, cache_dir)
        target.mkdir(parents=True)
        (target / artifacts.META).write_text(json.dumps(inputs))
        (target / artifacts.ARTIFACT).write_bytes(b"truncated by a crash")
    before = {variant: export.exports[variant] for variant in ("onnx-fp32", "onnx-int8")}
    encoder = Encoder(ModelConfig("int8", model_path, device="cpu", backend="onnx", dtype="int8", cache_dir=cache_dir))
    assert export.exports["onnx-fp32"] == before["onnx-fp32"] + 1
    assert export.exports["onnx-int8"] == before["onnx-int8"] + 1
    assert "onnx cannot load" in caplog.text and "exporting onnx-fp32 again" in caplog.text
    texts = ["a damaged source heals once", "一个损坏的源文件"]
    assert cosines(encoder.encode(texts), reference.encode(texts)).min() >= 0.98
    assert os.path.getsize(artifacts.artifact_dir(model_path, "onnx-fp32", cache_dir) / artifacts.ARTIFACT) > 10**6


def test_an_artifact_that_cannot_be_removed_is_a_model_load_error_saying_what_to_do(tmp_path, monkeypatch):
    target = tmp_path / "minilm-onnx-fp32-0123456789abcdef"
    target.mkdir()
    (target / artifacts.ARTIFACT).write_bytes(b"truncated by a crash")
    # Its lock cannot be opened (a real OSError, as a read-only volume gives one even to root).
    (tmp_path / f"{target.name}.lock").mkdir()
    with pytest.raises(ModelLoadError, match=r"does not load and cannot be removed: .*prepare_model"):
        artifacts.discard(target)
    # The lock opens but the folder stays (rmtree's errors are ignored): no new export could replace it.
    (tmp_path / f"{target.name}.lock").rmdir()
    monkeypatch.setattr(artifacts.shutil, "rmtree", lambda path, ignore_errors=False: None)
    with pytest.raises(ModelLoadError, match=r"does not load and cannot be removed; run manage.py prepare_model"):
        artifacts.discard(target)
