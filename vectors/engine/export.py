"""Export a model to ONNX (fp32, int8, fp32 with int8 weights) once, cached on disk; never on the request path.

The artifact lives next to the model (`<model dir>/.embedservice/`) when that directory is ours to
write, else under the cache directory (EMBED_CACHE_DIR) - always so for a model inside site-packages
or loaded by hub id. Its key covers the model's files (name, size, mtime), the variant and the
versions of every library that shapes the graph, so an upgrade re-exports instead of loading a stale
file. Several processes starting at once export once: the first holds a file lock, the others wait
and then find the finished artifact. An export killed half-way leaves only a scratch directory, which
the next export removes; an artifact that is there but does not load is exported again once
(vectors.engine.encoder). Nothing here downloads anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from .errors import ModelLoadError
from .quantize import RECIPE, WEIGHTS_RECIPE, compress_weights, quantize_model

logger = logging.getLogger(__name__)

ARTIFACT = "model.onnx"
META = "meta.json"
LOCAL_DIR = ".embedservice"
OPSET = 17
LIBRARIES = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "openvino")
# onnx-int8: the onnx backend's int8 graph; onnx-w8: int8 weights for the openvino backend's int8.
# Both are rewrites of onnx-fp32, made from it, each under its recipe's name.
VARIANTS = ("onnx-fp32", "onnx-int8", "onnx-w8")
RECIPES = {"onnx-int8": (RECIPE, quantize_model), "onnx-w8": (WEIGHTS_RECIPE, compress_weights)}

# How many exports this process has actually run, per variant (tests check that a reload runs none).
exports: Counter[str] = Counter()


def library_versions() -> dict[str, str]:
    """Return the installed version of each library that shapes an exported graph ('' if absent)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    return found


def fingerprint(model_path: str) -> list[tuple[str, int, int]]:
    """Return (relative name, size, mtime_ns) of the model's files; [] for a hub id."""
    root = Path(model_path)
    if not root.is_dir():
        return []
    files = []
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if file.is_file() and relative.parts[0] != LOCAL_DIR and not relative.name.startswith("."):
            stat = file.stat()
            files.append((str(relative), stat.st_size, stat.st_mtime_ns))
    return files


def recipe_of(variant: str) -> str:
    """The name of the rewrite that makes `variant` from the fp32 export ('' for the export itself)."""
    return RECIPES[variant][0] if variant in RECIPES else ""


def artifact_key(model_path: str, variant: str) -> str:
    """Return a hex digest of everything an exported artifact depends on."""
    recipe = recipe_of(variant)
    payload = {
        "path": os.path.realpath(model_path) if os.path.isdir(model_path) else model_path,
        "files": fingerprint(model_path),
        "variant": variant,
        "recipe": recipe,
        "opset": OPSET,
        "versions": library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_root(model_path: str, cache_dir: str) -> Path:
    """Return where artifacts of this model live: next to it when writable and not a package, else cache_dir."""
    root = Path(model_path)
    installed = any(part in ("site-packages", "dist-packages") for part in root.resolve().parts)
    if root.is_dir() and not installed and os.access(root, os.W_OK):
        return root / LOCAL_DIR
    return Path(cache_dir) if cache_dir else Path.home() / ".cache" / "embedservice"


def artifact_dir(model_path: str, variant: str, cache_dir: str) -> Path:
    """Return the directory that holds (or will hold) this model's artifact of `variant`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model_path.rstrip("/")).name or "model")[:60]
    return cache_root(model_path, cache_dir) / f"{slug}-{variant}-{artifact_key(model_path, variant)[:16]}"


def is_complete(directory: Path) -> bool:
    return (directory / META).is_file() and (directory / ARTIFACT).is_file()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive file lock at `path` (other processes wait here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def locked_artifact(target: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the lock of one artifact directory: whoever builds or removes it holds this one."""
    return locked(target.parent / f"{target.name}.lock")


def ensure_artifact(model: object, model_path: str, variant: str, cache_dir: str) -> Path:
    """Return the path of the model's ONNX file of `variant`, exporting it first if no valid one exists.

    `model` is the loaded SentenceTransformer whose pipeline (without a trailing Normalize) is exported.

    Raises:
        ModelLoadError: the export or quantisation failed, or the cache cannot be written.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    target = artifact_dir(model_path, variant, cache_dir)
    if is_complete(target):
        return target / ARTIFACT
    try:
        with locked_artifact(target):
            if is_complete(target):
                return target / ARTIFACT
            source = ensure_artifact(model, model_path, "onnx-fp32", cache_dir) if variant in RECIPES else None
            _build(model, model_path, variant, target, source)
    except OSError as exc:
        raise ModelLoadError(f"cannot write the {variant} artifact under {target.parent}: {exc}") from exc
    return target / ARTIFACT


def discard(target: Path) -> None:
    """Remove an artifact directory that exists but does not load (a truncated file after a crash)."""
    with locked_artifact(target):
        shutil.rmtree(target, ignore_errors=True)


def _build(model: object, model_path: str, variant: str, target: Path, source: Path | None) -> None:
    started = time.perf_counter()
    # Scratch directories of an export that was killed before it finished: nobody else builds this
    # target while we hold its lock, so whatever is there is left over.
    for leftover in target.parent.glob(f".{target.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if source is None:
            inputs = export_onnx(model, scratch / ARTIFACT)
        else:
            inputs = json.loads((source.parent / META).read_text())["inputs"]
            quantize_file(source, scratch / ARTIFACT, variant)
        meta = {
            "model_path": model_path,
            "variant": variant,
            "recipe": recipe_of(variant),
            "inputs": inputs,
            "versions": library_versions(),
            "export_s": round(time.perf_counter() - started, 2),
        }
        (scratch / META).write_text(json.dumps(meta, indent=2))  # written last: marks the artifact complete
        if target.exists():
            shutil.rmtree(target)  # an incomplete leftover of a crashed export
        os.rename(scratch, target)
    except ModelLoadError:
        raise
    except Exception as exc:  # the exporters raise many types; all mean "cannot export"
        raise ModelLoadError(f"exporting {model_path!r} to {variant} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    exports[variant] += 1
    logger.info("exported %s as %s to %s in %.1f s", model_path, variant, target, time.perf_counter() - started)


def export_onnx(model: object, destination: Path) -> list[str]:
    """Write the model's pipeline (tokens -> pooled vector, no Normalize) as ONNX; return its input names."""
    import warnings

    import torch

    tokenizer = model.tokenizer  # type: ignore[attr-defined]
    texts = ["a short text", "a somewhat longer text to pad the first one"]
    sample = tokenizer(texts, padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    module = pipeline_module(model, names).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"sentence_embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(sample[name] for name in names),
            str(destination),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles the HF models we serve
        )
    return names


def quantize_file(source: Path, destination: Path, variant: str) -> None:
    """Write the `variant` rewrite (vectors.engine.quantize) of the ONNX file at `source`."""
    import onnx

    model = onnx.load(str(source))
    if RECIPES[variant][1](model) == 0:
        raise ModelLoadError(f"{source}: no MatMul with a constant weight to quantise")
    onnx.save(model, str(destination))


def pipeline_module(model: object, names: list[str]) -> object:
    """The model's modules (tokens in, pooled vector out) as one torch module, to export or to trace."""
    import torch

    class Pipeline(torch.nn.Module):
        """The SentenceTransformer modules as one forward(input tensors) -> sentence_embedding."""

        def __init__(self) -> None:
            super().__init__()
            self.stages = torch.nn.ModuleList(list(model))  # type: ignore[call-overload]

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = dict(zip(names, tensors, strict=True))
            for stage in self.stages:
                features = stage(features)
            return features["sentence_embedding"]

    return Pipeline()
