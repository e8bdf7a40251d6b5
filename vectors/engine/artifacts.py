"""Where exported artifacts live on disk, what their key covers, and the locks around them.

The artifact lives next to the model (`<model dir>/.embedservice/`) when that directory is ours to
write, else under the cache directory (EMBED_CACHE_DIR) - always so for a model inside site-packages
or loaded by hub id; one prepared next to a model that is now read-only is still found there. Its key
covers the model's files (name, size, mtime; for a hub id, those of the cached snapshot it resolves
to, looked up where sentence-transformers caches it, and that snapshot's revision), the variant and
the versions of every library that shapes the graph, so an upgrade or a new snapshot re-exports
instead of loading a stale file. Building them is vectors.engine.export's job.
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
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from .errors import ArtifactUnreadable, ModelLoadError
from .quantize import RECIPE, WEIGHTS_RECIPE

logger = logging.getLogger(__name__)

ARTIFACT = "model.onnx"
META = "meta.json"
LOCAL_DIR = ".embedservice"
COMPILE_CACHE = "openvino-cache"
OPSET = 17
LIBRARIES = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "openvino")
# onnx-int8: the onnx backend's int8 graph; onnx-w8: int8 weights for the openvino backend's int8.
# Both are rewrites of onnx-fp32, made from it, each under its recipe's name.
VARIANTS = ("onnx-fp32", "onnx-int8", "onnx-w8")
RECIPE_NAMES = {"onnx-int8": RECIPE, "onnx-w8": WEIGHTS_RECIPE}
PREPARE_AGAIN = "run manage.py prepare_model where the folder is writable, or remove it"


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


def hub_repo_id(model_path: str) -> str:
    """Return the repo id SentenceTransformer loads for `model_path`: a bare name is under its organisation."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import ORIGINAL_TRANSFORMER_MODELS

    organization = SentenceTransformer.default_huggingface_organization
    if organization and "/" not in model_path and model_path.lower() not in ORIGINAL_TRANSFORMER_MODELS:
        return f"{organization}/{model_path}"
    return model_path


def hub_snapshot(model_path: str, hub_cache_dir: str | None = None) -> Path | None:
    """Return the cached snapshot folder sentence-transformers loads a hub id from; None if none is there.

    hub_cache_dir: the cache_folder the model is loaded with (ModelConfig.hub_cache_dir); None: Hugging Face's.
    """
    if os.path.isdir(model_path):
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        # The repo id, cache folder and refs/main that SentenceTransformer(model_path) resolves.
        return Path(snapshot_download(hub_repo_id(model_path), cache_dir=hub_cache_dir or None, local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError):
        return None  # not a repo id, or not cached there: the key falls back to the name alone


def recipe_of(variant: str) -> str:
    """The name of the rewrite that makes `variant` from the fp32 export ('' for the export itself)."""
    return RECIPE_NAMES.get(variant, "")


def artifact_key(model_path: str, variant: str, hub_cache_dir: str | None = None) -> str:
    """Return a hex digest of everything an exported artifact depends on."""
    recipe = recipe_of(variant)
    snapshot = hub_snapshot(model_path, hub_cache_dir)
    payload = {
        "path": os.path.realpath(model_path) if os.path.isdir(model_path) else model_path,
        "files": fingerprint(str(snapshot) if snapshot else model_path),
        "variant": variant,
        "recipe": recipe,
        "opset": OPSET,
        "versions": library_versions(),
    }
    if snapshot:  # only then: the keys of local models stay what they were, and so do their artifacts
        payload["revision"] = snapshot.name
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_home(cache_dir: str) -> Path:
    """Return the configured cache directory ('' means ~/.cache/embedservice)."""
    return Path(cache_dir) if cache_dir else Path.home() / ".cache" / "embedservice"


def local_root(model_path: str) -> Path | None:
    """Return the folder beside a model of our own that may hold its artifacts; None for a package or hub id."""
    root = Path(model_path)
    installed = any(part in ("site-packages", "dist-packages") for part in root.resolve().parts)
    return root / LOCAL_DIR if root.is_dir() and not installed else None


def cache_root(model_path: str, cache_dir: str) -> Path:
    """Return where artifacts of this model are made: next to it when writable and not a package, else cache_dir."""
    local = local_root(model_path)
    if local is not None and os.access(local.parent, os.W_OK):
        return local
    return cache_home(cache_dir)


def artifact_dir(model_path: str, variant: str, cache_dir: str, hub_cache_dir: str | None = None) -> Path:
    """Return the directory that holds (or will hold) this model's artifact of `variant`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model_path.rstrip("/")).name or "model")[:60]
    name = f"{slug}-{variant}-{artifact_key(model_path, variant, hub_cache_dir)[:16]}"
    local = local_root(model_path)
    # Prepared beside the model (an image build), then mounted read-only: the artifact is still there.
    if local is not None and is_complete(local / name):
        return local / name
    return cache_root(model_path, cache_dir) / name


def is_complete(directory: Path) -> bool:
    return (directory / META).is_file() and (directory / ARTIFACT).is_file()


def writable(directory: Path) -> bool:
    """Whether files can be made in `directory`, creating it if missing (False on a read-only volume)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    # Asked before mkdir: root creates folders through chmod; only os.access tells a read-only mount.
    if not os.access(existing, os.W_OK):
        return False
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def compile_cache_dir(artifact: Path, cache_dir: str) -> Path | None:
    """Return where OpenVINO keeps the compiled blobs of `artifact`; None when nowhere is writable.

    Beside the artifact when its folder is writable, else under the cache directory (an artifact
    prepared at build time on a volume mounted read-only); OpenVINO fails to compile a model whose
    cache folder it cannot create. Without a cache every start compiles the model again (seconds).
    """
    beside = artifact.parent / COMPILE_CACHE
    if writable(beside):
        return beside
    elsewhere = cache_home(cache_dir) / COMPILE_CACHE / artifact.parent.name
    if writable(elsewhere):
        logger.info("%s is not writable; OpenVINO keeps its compiled blobs in %s", artifact.parent, elsewhere)
        return elsewhere
    logger.warning(
        "%s is not writable, nor is %s: OpenVINO compiles %s at every start, without a compile cache",
        artifact.parent,
        elsewhere,
        artifact.name,
    )
    return None


def artifact_inputs(artifact: Path) -> list[str]:
    """Return the graph's input names that the export wrote in meta.json beside `artifact`.

    Raises:
        ArtifactUnreadable: meta.json is missing or damaged.
    """
    try:
        return list(json.loads((artifact.parent / META).read_text())["inputs"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactUnreadable(f"cannot read {artifact.parent / META}: {type(exc).__name__}: {exc}") from exc


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


def discard(target: Path) -> None:
    """Remove an artifact directory that exists but does not load (a truncated file after a crash).

    Raises:
        ModelLoadError: it cannot be removed (a read-only volume): no new export could replace it.
    """
    try:
        with locked_artifact(target):
            shutil.rmtree(target, ignore_errors=True)
    except OSError as exc:
        raise ModelLoadError(f"{target} does not load and cannot be removed: {exc}; {PREPARE_AGAIN}") from exc
    if target.exists():
        raise ModelLoadError(f"{target} does not load and cannot be removed; {PREPARE_AGAIN}")
