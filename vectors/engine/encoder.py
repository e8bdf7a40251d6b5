"""Load a sentence-transformers model and encode lists of texts with it (sync, one thread)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from .config import ModelConfig
from .errors import ModelLoadError

logger = logging.getLogger(__name__)


def resolve_device(requested: str) -> str:
    """Return the torch device for `auto|cpu|cuda[:N]`; auto picks CUDA when present."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {requested!r} requested but CUDA is not available")
    return requested


class Encoder:
    """A loaded model: tokenizer, dimensions and the one `encode` the batcher calls.

    A trailing `Normalize` module is taken out of the pipeline so that callers may ask for
    raw pooled vectors (TEI's `normalize=false`); `normalizes` says whether the model's own
    pipeline normalised, and the API applies it unless asked not to.
    """

    def __init__(self, config: ModelConfig) -> None:
        """Load the model named by `config`.

        Raises:
            ModelLoadError: the path or hub id cannot be loaded.
        """
        self.config = config
        self.device = resolve_device(config.device)
        self.model = self._load(config, self.device)
        self.normalizes = self._strip_normalize()
        if config.max_seq_length:
            self.model.max_seq_length = config.max_seq_length
        self.max_seq_length: int = int(self.model.max_seq_length)
        self.dimensions: int = int(self.model.get_embedding_dimension())
        self.tokenizer = self.model.tokenizer
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
            model = SentenceTransformer(config.path, device=device, backend=config.backend)
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

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Return each text's token count with special tokens, before any truncation."""
        counter = self._token_counter()
        if counter is not None:
            # The Rust tokenizer directly: half the cost of the transformers wrapper, on the event loop.
            return [len(encoding) for encoding in counter.encode_batch(list(texts), add_special_tokens=True)]
        encoded = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _token_counter(self):  # noqa: ANN202 - tokenizers.Tokenizer | None
        if not hasattr(self, "_counter"):
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            counter = None
            if backend is not None:
                from tokenizers import Tokenizer

                # A private copy: the model's own one carries padding/truncation state between calls.
                counter = Tokenizer.from_str(backend.to_str())
                counter.no_truncation()
                counter.no_padding()
            self._counter = counter
        return self._counter

    def decode_tokens(self, token_ids: Sequence[int]) -> str:
        """Return the text for token ids of this model's own tokenizer."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return un-normalised float32 embeddings, one row per text, in order."""
        import torch

        self.model_calls += 1
        with torch.inference_mode():
            rows = self.model.encode(
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return np.asarray(rows, dtype=np.float32)

    def warm(self) -> None:
        """Run a few calls so the first real request does not pay one-time costs."""
        self.token_counts(["warm up"])
        self.encode(["warm up"])
        self.encode(["warm up the model with a batch of a few texts"] * 8)
