"""Backends on the packaged model: each loads, encodes and stays within its tolerance of torch fp32."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cosines
from vectors.engine import artifacts, export
from vectors.engine.config import ModelConfig
from vectors.engine.encoder import Encoder
from vectors.engine.errors import ModelLoadError
from vectors.quality.corpus import quality_corpus
from vectors.quality.guard import TOLERANCES, encode_all, judge
from vectors.quality.metrics import compare

TEXTS = list(quality_corpus())[::3]  # every third text: all languages and lengths, a third of the time


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def fp32_rows(model_path: str) -> np.ndarray:
    return encode_all(Encoder(ModelConfig("reference", model_path, device="cpu", torch_jit=False)).encode, TEXTS)


@pytest.mark.parametrize(
    ("backend", "dtype"),
    [
        ("onnx", "fp32"),
        ("onnx", "int8"),
        ("openvino", "fp32"),
        ("openvino", "int8"),
        ("torch", "fp32"),
        ("torch", "bf16"),
    ],
)
def test_each_backend_encodes_the_packaged_model_within_its_tolerance(backend, dtype, model_path, cache_dir, fp32_rows):
    config = ModelConfig(
        f"{backend}-{dtype}", model_path, device="cpu", backend=backend, dtype=dtype, cache_dir=cache_dir
    )
    verdict = judge(config, fp32_rows, TEXTS)
    assert verdict.agreement is not None, verdict.skipped
    tolerance = TOLERANCES[dtype]
    assert verdict.agreement.mean_cosine >= tolerance.mean_cosine, verdict
    assert verdict.agreement.worst_cosine >= tolerance.worst_cosine, verdict
    if dtype == "fp32":
        assert verdict.agreement.top_k_agreement >= tolerance.top_k_agreement, verdict


@pytest.mark.parametrize(
    ("backend", "dtype"), [("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8"), ("torch", "bf16")]
)
def test_two_calls_at_once_on_the_one_thread_session_give_the_rows_of_the_all_threads_one(
    backend, dtype, model_path, cache_dir
):
    from concurrent.futures import ThreadPoolExecutor

    encoder = Encoder(ModelConfig("p", model_path, device="cpu", backend=backend, dtype=dtype, cache_dir=cache_dir))
    encoder.prepare_parallel(1, 2)
    if backend != "torch":  # torch sets the threads of the calling thread instead (one traced module)
        assert encoder._narrow_run is not None and encoder._narrow_run is not encoder._run
    halves = [TEXTS[:40], TEXTS[40:80]]
    with ThreadPoolExecutor(2) as lanes:
        together = [f.result() for f in [lanes.submit(encoder.encode, half, 1) for half in halves]]
    for half, rows in zip(halves, together, strict=True):
        alone = encoder.encode(half)
        assert rows.shape == alone.shape
        assert cosines(rows, alone).min() >= 0.9999


def test_exported_encoder_keeps_the_encoder_surface(model_path, cache_dir, reference):
    encoder = Encoder(ModelConfig("int8", model_path, device="cpu", backend="onnx", dtype="int8", cache_dir=cache_dir))
    assert (encoder.dimensions, encoder.max_seq_length, encoder.device) == (384, 256, "cpu")
    assert encoder.normalizes and encoder.backend == "onnx" and encoder.dtype == "int8"
    assert encoder.token_counts(["hello world"]) == [4]
    assert encoder.decode_tokens(encoder.tokenizer("hello world")["input_ids"]) == "hello world"
    rows = encoder.encode(["a cat sits on the mat", "今天天气很好"])
    assert rows.dtype == np.float32 and rows.shape == (2, 384)
    assert np.linalg.norm(rows, axis=1).min() > 1.5  # un-normalised, like torch's pooled rows
    assert cosines(rows, reference.encode(["a cat sits on the mat", "今天天气很好"])).min() >= 0.98
    calls = encoder.model_calls
    encoder.warm()
    assert encoder.model_calls == calls + 2


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_int8_rows_do_not_depend_on_what_else_is_in_the_batch(backend, model_path, cache_dir):
    config = ModelConfig("int8", model_path, device="cpu", backend=backend, dtype="int8", cache_dir=cache_dir)
    encoder = Encoder(config)
    alone = encoder.encode(["the invoice from last month"])
    crowded = encoder.encode(["the invoice from last month", "!!!!! " * 40, "ZZZZ 9999 ####"])[:1]
    np.testing.assert_allclose(alone, crowded, rtol=0, atol=1e-4)


def test_export_runs_once_and_a_second_load_reuses_it(model_path, tmp_path):
    config = ModelConfig("int8", model_path, device="cpu", backend="onnx", dtype="int8", cache_dir=str(tmp_path))
    before = dict(export.exports)
    first = Encoder(config)
    assert export.exports["onnx-fp32"] == before.get("onnx-fp32", 0) + 1
    assert export.exports["onnx-int8"] == before.get("onnx-int8", 0) + 1
    stamp = os.stat(first.artifact).st_mtime_ns
    again = Encoder(config)
    openvino = Encoder(ModelConfig("ov", model_path, device="cpu", backend="openvino", cache_dir=str(tmp_path)))
    assert export.exports["onnx-fp32"] == before.get("onnx-fp32", 0) + 1  # openvino reads the same fp32 file
    assert export.exports["onnx-int8"] == before.get("onnx-int8", 0) + 1
    assert again.artifact == first.artifact and os.stat(again.artifact).st_mtime_ns == stamp
    assert openvino.artifact and openvino.artifact.startswith(str(tmp_path))
    assert artifacts.is_complete(artifacts.artifact_dir(model_path, "onnx-int8", str(tmp_path)))
    config = ModelConfig("ov8", model_path, device="cpu", backend="openvino", dtype="int8", cache_dir=str(tmp_path))
    compressed = [Encoder(config), Encoder(config)]
    assert export.exports["onnx-w8"] == before.get("onnx-w8", 0) + 1  # made once, from the same fp32 file
    assert export.exports["onnx-fp32"] == before.get("onnx-fp32", 0) + 1
    assert compressed[0].artifact == compressed[1].artifact != first.artifact


def test_an_export_killed_half_way_or_a_corrupt_artifact_is_exported_again(model_path, tmp_path, reference, caplog):
    config = ModelConfig("fp32", model_path, device="cpu", backend="onnx", dtype="fp32", cache_dir=str(tmp_path))
    target = artifacts.artifact_dir(model_path, "onnx-fp32", str(tmp_path))
    leftover = target.parent / f".{target.name}-killed"  # the scratch directory of a killed export
    leftover.mkdir(parents=True)
    (leftover / artifacts.ARTIFACT).write_bytes(b"half an onnx file")
    before = export.exports["onnx-fp32"]
    Encoder(config)
    assert not leftover.exists() and export.exports["onnx-fp32"] == before + 1
    (target / artifacts.ARTIFACT).write_bytes(b"truncated by a crash")  # still "complete": meta.json is there
    healed = Encoder(config)
    assert export.exports["onnx-fp32"] == before + 2
    assert "onnxruntime cannot load" in caplog.text and "exporting it again" in caplog.text
    texts = ["a corrupt cache heals itself", "一个损坏的缓存"]
    assert cosines(healed.encode(texts), reference.encode(texts)).min() >= 0.9999


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch):
    """Make a directory tree read-only the way a read-only volume is; writable again after the test."""
    made: list[Path] = []

    def make(root: Path) -> None:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        made.append(root)
        if os.geteuid() == 0:
            # Root writes through chmod, but not through a read-only mount, where os.access says so (EROFS)
            # even to root. Simulated here: os.access refuses writes under root; that anything was written
            # there anyway is what the caller checks (the listing of the volume stays as it was).
            real = os.access

            def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
                if mode & os.W_OK and Path(os.fspath(path)).resolve().is_relative_to(root.resolve()):
                    return False
                return real(path, mode, *args, **kwargs)

            monkeypatch.setattr(os, "access", access)

    yield make
    for root in made:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.parametrize("layout", ["next to the model", "in the cache dir"])
def test_a_prepared_artifact_on_a_read_only_volume_loads_on_openvino_without_writing_there(
    layout, model_path, tmp_path, read_only, reference, caplog
):
    volume, data = tmp_path / "volume", tmp_path / "data"
    if layout == "next to the model":  # a model folder of our own: its artifact is made beside it
        model, cache_dir = volume / "minilm", data / "models"
        shutil.copytree(model_path, model)
    else:  # an installed model: its artifact is made under EMBED_CACHE_DIR, here on the volume too
        model, cache_dir = Path(model_path), volume / "models"
    options = {"device": "cpu", "cache_dir": str(cache_dir)}
    Encoder(ModelConfig("build", str(model), backend="onnx", **options))  # the image build prepares the export
    prepared = artifacts.artifact_dir(str(model), "onnx-fp32", str(cache_dir))
    assert prepared.is_relative_to(volume) and artifacts.is_complete(prepared)
    read_only(volume)
    listing = sorted(volume.rglob("*"))
    before = export.exports["onnx-fp32"]
    encoder = Encoder(ModelConfig("ov", str(model), backend="openvino", **options))
    assert encoder.artifact == str(prepared / artifacts.ARTIFACT) and export.exports["onnx-fp32"] == before
    assert sorted(volume.rglob("*")) == listing  # nothing written (and nothing tried: it would fail there)
    if layout == "next to the model":  # the compiled blobs go to the writable cache dir instead
        assert list((cache_dir / artifacts.COMPILE_CACHE).rglob("*.blob"))
    else:  # nowhere writable: no compile cache, and the log says why
        assert "not writable" in caplog.text and "without a compile cache" in caplog.text
    texts = ["a read-only volume", "ein schreibgeschütztes Volume"]
    assert cosines(encoder.encode(texts), reference.encode(texts)).min() >= 0.9999


def test_a_library_upgrade_gives_a_new_artifact_key(model_path, monkeypatch):
    key = artifacts.artifact_key(model_path, "onnx-int8")
    assert artifacts.artifact_key(model_path, "onnx-fp32") != key != artifacts.artifact_key(model_path, "onnx-w8")
    monkeypatch.setattr(artifacts, "library_versions", lambda: {"onnxruntime": "99.0"})
    assert artifacts.artifact_key(model_path, "onnx-int8") != key


def test_artifacts_go_next_to_a_writable_model_but_never_into_site_packages(model_path, tmp_path):
    assert artifacts.cache_root(model_path, str(tmp_path / "cache")) == tmp_path / "cache"
    own = tmp_path / "my-model"
    own.mkdir()
    assert artifacts.cache_root(str(own), str(tmp_path / "cache")) == own / artifacts.LOCAL_DIR
    assert artifacts.cache_root("sentence-transformers/some-hub-id", "") == Path.home() / ".cache" / "embedservice"


def test_an_unfinished_export_is_not_taken_for_a_finished_one(model_path, tmp_path):
    target = artifacts.artifact_dir(model_path, "onnx-fp32", str(tmp_path))
    target.mkdir(parents=True)
    (target / artifacts.ARTIFACT).write_bytes(b"half a file")  # a crash before meta.json was written
    assert not artifacts.is_complete(target)


def test_a_combination_that_cannot_run_fails_to_load_with_the_reason(model_path):
    with pytest.raises(ModelLoadError, match="CUDA only"):
        Encoder(ModelConfig("x", model_path, device="cpu", dtype="fp16"))
    with pytest.raises(ModelLoadError, match="does not run dtype 'int8'"):
        Encoder(ModelConfig("x", model_path, device="cpu", backend="torch", dtype="int8"))


def test_a_load_error_from_a_runner_names_the_model_once(model_path, monkeypatch):
    from vectors.engine import onednn, support

    monkeypatch.setattr(onednn, "available", lambda: False)  # a torch build without oneDNN
    with pytest.raises(ModelLoadError, match=r"^model 'mine': EMBED_TORCH_LINEAR=onednn: this torch build has no"):
        Encoder(ModelConfig("mine", model_path, device="cpu", torch_linear="onednn", warmup=False))
    monkeypatch.setattr(support, "missing_package", lambda backend: "onnxruntime")
    with pytest.raises(ModelLoadError, match=r"^model 'mine': backend 'onnx' needs the package 'onnxruntime'$"):
        Encoder(ModelConfig("mine", model_path, device="cpu", backend="onnx", warmup=False))


def test_compare_measures_cosine_and_neighbour_agreement():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 16))
    same = compare(rows, rows * 3.0)
    assert same.mean_cosine == pytest.approx(1.0) and same.top_k_agreement == 1.0
    noisy = compare(rows, rows + rng.normal(scale=0.5, size=rows.shape))
    assert noisy.mean_cosine < 0.99 and noisy.top_k_agreement < 1.0


def test_the_cuda_fp16_path_halves_the_weights_and_still_returns_float32_rows(model_path, reference):
    """What runs on a GPU, run here on CPU (torch has half kernels there too): weights, dtype, accuracy."""
    import torch
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    model = SentenceTransformer(model_path, device="cpu")
    runner = TorchRunner(model, "cpu", "fp16")
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    texts = ["a cat sits on the mat", "the quarterly report is late"]
    rows = runner(texts)
    assert rows.dtype == np.float32 and rows.shape == (2, 384)
    assert cosines(rows, reference.encode(texts)).min() >= 0.999


def test_two_loaders_at_once_export_once(model_path, tmp_path):
    """What `serve --workers N` does at its first start: the file lock makes the others wait and reuse."""
    from concurrent.futures import ThreadPoolExecutor

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    del model[len(model) - 1]
    before = export.exports["onnx-fp32"]
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: export.ensure_artifact(model, model_path, "onnx-fp32", str(tmp_path)), [1, 2]))
    assert paths[0] == paths[1] and paths[0].is_file()
    assert export.exports["onnx-fp32"] == before + 1
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [paths[0].parent.name]  # no scratch left behind


def test_torch_on_the_cpu_runs_as_a_checked_trace_with_the_eager_rows(model_path, reference):
    texts = [*TEXTS[:30], "x", "word " * 600]  # padding, a lone token, a text past the length limit
    traced = Encoder(ModelConfig("t", model_path, device="cpu"))
    eager = Encoder(ModelConfig("e", model_path, device="cpu", torch_jit=False))
    assert traced._run.traced is not None and eager._run.traced is None
    want = reference.encode(texts, normalize_embeddings=False)
    assert cosines(traced.encode(texts), want).min() >= 0.9999
    assert cosines(traced.encode(texts[-2:-1]), want[-2:-1]).min() >= 0.9999  # a batch of one
    assert cosines(eager.encode(texts), want).min() >= 0.9999


def test_a_model_that_cannot_be_traced_runs_eagerly_and_says_why(model_path, reference, monkeypatch, caplog):
    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("this module cannot be traced")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    encoder = Encoder(ModelConfig("t", model_path, device="cpu"))
    assert encoder._run.traced is None
    assert "cannot be traced" in caplog.text and "runs eagerly" in caplog.text
    texts = TEXTS[:8]
    assert cosines(encoder.encode(texts), reference.encode(texts, normalize_embeddings=False)).min() >= 0.9999


def test_a_trace_that_disagrees_with_the_eager_model_is_not_used(model_path, reference, monkeypatch, caplog):
    import torch

    real = export.pipeline_module

    def wrong(model: object, names: list[str]) -> torch.nn.Module:
        class Flipped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = real(model, names)

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                return -self.inner(*tensors)

        return Flipped()

    monkeypatch.setattr(export, "pipeline_module", wrong)
    encoder = Encoder(ModelConfig("t", model_path, device="cpu"))
    assert encoder._run.traced is None and "differ from the eager model" in caplog.text
    texts = TEXTS[:8]
    assert cosines(encoder.encode(texts), reference.encode(texts, normalize_embeddings=False)).min() >= 0.9999


def test_bf16_on_a_gpu_without_bf16_is_refused_at_load(model_path, monkeypatch):
    import torch
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner
    from vectors.engine.errors import ModelLoadError

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # a T4 or V100
    model = SentenceTransformer(model_path, device="cpu")
    with pytest.raises(ModelLoadError, match="use dtype fp16"):
        TorchRunner(model, "cuda:0", "bf16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # refused before anything changed


def test_bf16_converts_the_whole_model_and_its_trace_gives_the_bf16_models_rows(model_path, reference):
    import torch
    from sentence_transformers import SentenceTransformer

    from vectors.engine.backends import TorchRunner

    model = SentenceTransformer(model_path, device="cpu")
    runner = TorchRunner(model, "cpu", "bf16", jit=True)
    assert runner.traced is not None
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # nothing left to cast on each call
    texts = [*TEXTS[:16], "word " * 400]  # the last one runs the full 256 tokens
    rows = runner(texts)
    assert rows.dtype == np.float32
    with torch.inference_mode():
        eager = model.encode(texts, convert_to_tensor=True, normalize_embeddings=False).float().numpy()
    assert cosines(rows, eager).min() >= 0.9999
    assert cosines(rows, reference.encode(texts, normalize_embeddings=False)).min() >= 0.999


@pytest.mark.parametrize(
    ("backend", "dtype", "jit"),
    [("onnx", "int8", True), ("openvino", "fp32", True), ("torch", "fp32", True), ("torch", "fp32", False)],
)
def test_the_model_call_counts_each_texts_tokens_as_the_model_saw_them(
    backend, dtype, jit, model_path, cache_dir, reference
):
    options = {"backend": backend, "dtype": dtype, "cache_dir": cache_dir, "torch_jit": jit}
    encoder = Encoder(ModelConfig("c", model_path, device="cpu", **options))
    texts = [*TEXTS[:40], "word " * 400]  # the last is cut to the model's 256
    rows, counts = encoder.encode_counted(texts)
    assert rows.shape == (len(texts), 384)
    if backend == "torch" and not jit:
        assert counts is None and not encoder.counts_in_call  # eager encode does not tell
        return
    assert encoder.counts_in_call
    assert counts.tolist() == [min(n, 256) for n in encoder.token_counts(texts)]
    assert counts[-1] == 256 and counts.tolist()[:3] == [len(i) for i in reference.tokenizer(texts[:3])["input_ids"]]
