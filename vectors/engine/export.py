"""Export a model to ONNX (fp32, int8, fp32 with int8 weights) once, cached on disk; never on the request path.

Where artifacts go and what their key covers is vectors.engine.artifacts. Several processes starting at
once export once: the first holds a file lock, the others wait and then find the finished artifact. An
export killed half-way leaves only a scratch directory, which the next export removes; an artifact that
is there but does not load is exported again once (vectors.engine.encoder), and so is an fp32 export
that an int8 rewrite cannot read. Nothing here downloads anything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from .artifacts import (
    ARTIFACT,
    META,
    OPSET,
    VARIANTS,
    artifact_dir,
    artifact_inputs,
    discard,
    is_complete,
    library_versions,
    locked_artifact,
    recipe_of,
)
from .errors import ArtifactUnreadable, ModelLoadError
from .quantize import compress_weights, quantize_model

logger = logging.getLogger(__name__)

# The rewrite that makes each derived variant from the fp32 export (named in artifacts.RECIPE_NAMES).
REWRITES = {"onnx-int8": quantize_model, "onnx-w8": compress_weights}

# How many exports this process has actually run, per variant (tests check that a reload runs none).
exports: Counter[str] = Counter()


def ensure_artifact(
    model: object, model_path: str, variant: str, cache_dir: str, hub_cache_dir: str | None = None
) -> Path:
    """Return the path of the model's ONNX file of `variant`, exporting it first if no valid one exists.

    `model` is the loaded SentenceTransformer whose pipeline (without a trailing Normalize) is exported;
    hub_cache_dir is the cache_folder it was loaded with (a hub id's snapshot is looked up there).

    Raises:
        ModelLoadError: the export or quantisation failed, or the cache cannot be written.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    target = artifact_dir(model_path, variant, cache_dir, hub_cache_dir)
    if is_complete(target):
        return target / ARTIFACT
    try:
        with locked_artifact(target):
            if is_complete(target):
                return target / ARTIFACT
            if variant in REWRITES:
                _derive(model, model_path, variant, target, cache_dir, hub_cache_dir)
            else:
                _build(model, model_path, variant, target, None)
    except OSError as exc:
        raise ModelLoadError(f"cannot write the {variant} artifact under {target.parent}: {exc}") from exc
    return target / ARTIFACT


def _derive(
    model: object, model_path: str, variant: str, target: Path, cache_dir: str, hub_cache_dir: str | None
) -> None:
    """Build a rewrite of the fp32 export; an fp32 export it cannot read is exported again, once."""
    source = ensure_artifact(model, model_path, "onnx-fp32", cache_dir, hub_cache_dir)
    try:
        _build(model, model_path, variant, target, source)
        return
    except ArtifactUnreadable as exc:
        logger.warning("%s: %s; exporting onnx-fp32 again for the %s rewrite", model_path, exc, variant)
    # discard() takes the source's lock while this process holds the rewrite's: the order in which
    # ensure_artifact takes them too, so two processes healing at once cannot deadlock.
    discard(source.parent)
    source = ensure_artifact(model, model_path, "onnx-fp32", cache_dir, hub_cache_dir)
    try:
        _build(model, model_path, variant, target, source)
    except ArtifactUnreadable as exc:
        raise ModelLoadError(f"the {variant} rewrite cannot read its source after a new export: {exc}") from exc


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
            inputs = quantize_file(source, scratch / ARTIFACT, variant)
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


def quantize_file(source: Path, destination: Path, variant: str) -> list[str]:
    """Write the `variant` rewrite (vectors.engine.quantize) of the ONNX file at `source`; return its inputs.

    Raises:
        ArtifactUnreadable: `source` or its meta.json is damaged (cut short, emptied).
        ModelLoadError: the graph has nothing to rewrite.
    """
    import onnx
    from google.protobuf.message import DecodeError

    inputs = artifact_inputs(source)  # the rewrite keeps the source's inputs
    try:
        model = onnx.load(str(source))
    except (DecodeError, OSError, ValueError) as exc:
        raise ArtifactUnreadable(f"onnx cannot load {source}: {type(exc).__name__}: {exc}") from exc
    if not model.graph.node:  # an empty file parses as an empty model
        raise ArtifactUnreadable(f"onnx cannot load {source}: it holds no graph")
    if REWRITES[variant](model) == 0:
        raise ModelLoadError(f"{source}: no MatMul with a constant weight to quantise")
    onnx.save(model, str(destination))
    return inputs


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
