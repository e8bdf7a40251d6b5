"""Load a model and encode lists of texts with it (sync, one thread), on the configured backend and dtype."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from . import support
from .config import ModelConfig
from .errors import ArtifactUnreadable, ModelLoadError

logger = logging.getLogger(__name__)


class Runner(Protocol):
    """A backend's model call (vectors.engine.backends): rows, or rows and token counts."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...

    def counted(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]: ...


def resolve_device(requested: str) -> str:
    """Return the torch device for `auto|cpu|cuda[:N]`; auto picks CUDA when present."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {requested!r} requested but CUDA is not available")
    return requested


def max_positions(model: object) -> int | None:
    """How many token positions the model's transformer has (None when it does not say)."""
    try:
        config = model[0].auto_model.config  # type: ignore[index]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    positions = getattr(config, "max_position_embeddings", None)
    return positions if isinstance(positions, int) and positions > 0 else None


class Encoder:
    """A loaded model: tokenizer, dimensions and the one `encode` the batcher calls.

    The sentence-transformers model is always loaded (on CPU for the exported backends): it gives the
    tokenizer, the limits and the pipeline that `onnx` and `openvino` export once (vectors.engine.export)
    and then run instead of torch. A trailing `Normalize` module is taken out of the pipeline so that
    callers may ask for raw pooled vectors (TEI's `normalize=false`); `normalizes` says whether the
    model's own pipeline normalised, and the API applies it unless asked not to.
    """

    def __init__(self, config: ModelConfig) -> None:
        """Load the model named by `config` on its backend, exporting it first if needed.

        Raises:
            ModelLoadError: the path or hub id cannot be loaded, the combination of backend, dtype
                and device cannot run here, or the export failed.
        """
        self.config = config
        self.backend = config.backend
        self.dtype = config.dtype
        reason = support.problem(config.backend, config.dtype, config.device)
        if reason:
            raise ModelLoadError(f"model {config.name!r}: {reason}")
        self.device = resolve_device(config.device) if config.backend == "torch" else "cpu"
        reason = support.problem(config.backend, config.dtype, self.device)
        if reason:
            raise ModelLoadError(f"model {config.name!r}: {reason}")
        self.model = self._load(config, self.device)
        self.normalizes = self._strip_normalize()
        if config.max_seq_length:
            positions = max_positions(self.model)
            if positions is not None and config.max_seq_length > positions:
                raise ModelLoadError(
                    f"model {config.name!r}: max_seq_length {config.max_seq_length} is more than the "
                    f"{positions} positions the model has (its own limit is {self.model.max_seq_length})"
                )
            self.model.max_seq_length = config.max_seq_length
        self.max_seq_length: int = int(self.model.max_seq_length)
        self.dimensions: int = int(self.model.get_embedding_dimension())
        self.tokenizer = self.model.tokenizer
        self._counter = self._make_counter()
        self.artifact: str | None = None
        self._run: Runner = self._make_runner(config)
        self._narrow_run: Runner | None = None
        self._narrow_threads: int | None = None
        self.model_calls = 0

    @staticmethod
    def _load(config: ModelConfig, device: str):  # noqa: ANN205 - SentenceTransformer
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        looks_local = os.path.isabs(config.path) or config.path.startswith(".")
        if looks_local and not os.path.isdir(config.path):
            raise ModelLoadError(f"model {config.name!r}: directory {config.path!r} does not exist")
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(config.path, device=device, cache_folder=config.hub_cache_dir)
        except Exception as exc:  # the library raises many types; all mean "cannot load"
            raise ModelLoadError(
                f"model {config.name!r}: cannot load {config.path!r}: {type(exc).__name__}: {exc}"
            ) from exc
        model.eval()
        return model

    def _strip_normalize(self) -> bool:
        last = self.model[-1]
        if type(last).__name__ == "Normalize":
            del self.model[len(self.model) - 1]
            return True
        return False

    def _threads(self) -> int:
        if self.config.torch_threads:
            return self.config.torch_threads
        import torch

        return torch.get_num_threads()

    def _make_runner(self, config: ModelConfig, threads: int | None = None, streams: int = 1) -> Runner:
        try:
            return self._build_runner(config, threads, streams)
        except ModelLoadError as exc:
            # The runners and the export do not know the model's name; every load error says which model.
            exc.args = (f"model {config.name!r}: {exc}", *exc.args[1:])  # the same error, subclass and all
            raise

    def _build_runner(self, config: ModelConfig, threads: int | None, streams: int) -> Runner:
        from . import backends

        if config.backend == "torch":
            return backends.TorchRunner(
                self.model, self.device, config.dtype, jit=config.torch_jit, linear=config.torch_linear
            )
        threads = threads or self._threads()
        package = support.missing_package(config.backend)
        if package:
            raise ModelLoadError(f"backend {config.backend!r} needs the package {package!r}")
        from .artifacts import compile_cache_dir, discard
        from .export import ensure_artifact

        variant = "onnx-fp32"
        if config.dtype == "int8":
            variant = "onnx-int8" if config.backend == "onnx" else "onnx-w8"

        def load() -> Runner:
            artifact = ensure_artifact(self.model, config.path, variant, config.cache_dir, config.hub_cache_dir)
            self.artifact = str(artifact)
            if config.backend == "onnx":
                return backends.OnnxRunner(self.tokenizer, self.max_seq_length, artifact, threads)
            cache = compile_cache_dir(artifact, config.cache_dir)
            return backends.OpenVinoRunner(
                self.tokenizer, self.max_seq_length, artifact, threads, config.dtype, streams, cache
            )

        try:
            return load()  # a runner raises ArtifactUnreadable only after load() has set self.artifact
        except ArtifactUnreadable as exc:
            logger.warning("model %r: %s; exporting it again", config.name, exc)
        discard(Path(self.artifact).parent)
        try:
            return load()
        except ArtifactUnreadable as exc:
            raise ModelLoadError(f"the {variant} export does not load after a new export: {exc}") from exc

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Return each text's token count with special tokens, before any truncation."""
        if self._counter is not None:
            if len(texts) == 1:
                return [len(self._counter.encode(texts[0], add_special_tokens=True).ids)]
            return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=True)]
        encoded = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _make_counter(self):  # noqa: ANN202 - tokenizers.Tokenizer or None
        # The event loop counts tokens of every request; the Rust tokenizer directly costs a tenth
        # of the transformers wrapper, and a copy of its own shares no truncation or padding state
        # with the tokenizer the encode threads are using at the same moment.
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        from tokenizers import Tokenizer

        counter = Tokenizer.from_str(backend.to_str())
        counter.no_truncation()
        counter.no_padding()
        return counter

    def decode_tokens(self, token_ids: Sequence[int]) -> str:
        """Return the text for token ids of this model's own tokenizer."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def threads_per_call_adjustable(self) -> bool:
        """True where `encode(threads=...)` can run calls with fewer threads side by side (the CPU)."""
        return self.device == "cpu"

    @property
    def threads(self) -> int:
        """Threads of a call that runs alone."""
        return self._threads()

    def prepare_parallel(self, threads: int, calls: int) -> None:
        """Get ready for `calls` concurrent calls of `threads` threads each, `encode(threads=threads)`.

        torch sets the threads of the calling thread on each call; onnx and openvino need a session
        (compiled model) of their own for it, built and warmed here, not on the request path.
        """
        if self.config.backend == "torch" or threads == self._threads():
            return
        self._narrow_threads = threads
        self._narrow_run = self._make_runner(self.config, threads=threads, streams=calls)
        self._narrow_run(["warm up"])
        self._narrow_run(["warm up the model with a batch of a few texts"] * 8)

    def encode(self, texts: Sequence[str], threads: int | None = None) -> np.ndarray:
        """Return un-normalised float32 embeddings, one row per text, in order.

        threads: run this call with that many intra-op threads (the CPU only). torch: the setting is
            the calling thread's own, so each encode thread keeps its own count; onnx/openvino: the
            session made by `prepare_parallel` for that count.
        """
        return self.encode_counted(texts, threads)[0]

    @property
    def torch_linear(self) -> str | None:
        """torch on the CPU, traced: which library runs its Linear layers ("torch" or "onednn"); else None."""
        return getattr(self._run, "linear", None)

    @property
    def counts_in_call(self) -> bool:
        """True where `encode_counted` also returns each text's token count (after truncation)."""
        return bool(getattr(self._run, "counts_tokens", False))

    def encode_counted(self, texts: Sequence[str], threads: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """`encode`, and each text's token count as the model saw it where the call knows it, else None.

        The exported backends and the traced torch model tokenise inside the call, so the counts cost
        nothing there, and the event loop need not tokenise every request a second time to count.
        """
        run = self._run
        if threads and self.threads_per_call_adjustable:
            if self.config.backend == "torch":
                import torch

                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
            elif threads == self._narrow_threads and self._narrow_run is not None:
                run = self._narrow_run
        self.model_calls += 1
        rows, counts = run.counted(texts)
        return np.asarray(rows, dtype=np.float32), counts

    def warm(self) -> None:
        """Run a few calls so the first real request does not pay one-time costs."""
        self.encode(["warm up"])
        self.encode(["warm up the model with a batch of a few texts"] * 8)
