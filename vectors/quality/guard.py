"""Each backend/precision against the torch fp32 reference, with the tolerance it must meet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..engine.batches import EncodeFn
from ..engine.config import ModelConfig
from ..engine.encoder import Encoder
from ..engine.errors import ModelLoadError
from .corpus import quality_corpus
from .metrics import Agreement, compare


@dataclass(frozen=True)
class Tolerance:
    """The least a configuration must reach against the fp32 reference to be served."""

    mean_cosine: float
    worst_cosine: float
    top_k_agreement: float


# fp32 differs only by summation order; bf16/fp16 by rounding every op (the model runs in it); int8 by quantisation.
TOLERANCES = {
    "fp32": Tolerance(0.9999, 0.999, 0.98),
    "bf16": Tolerance(0.999, 0.99, 0.95),
    "fp16": Tolerance(0.999, 0.99, 0.95),
    "int8": Tolerance(0.99, 0.97, 0.95),
}

# Everything this build can run on a CPU, for `embedquality --all`. torch fp32 is there too: it runs as a
# TorchScript trace, not the eager sentence-transformers model that is the reference.
CPU_COMBINATIONS = (
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnx", "fp32"),
    ("onnx", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
)


@dataclass(frozen=True)
class Verdict:
    """One configuration's agreement with the reference and whether it meets its tolerance."""

    name: str
    backend: str
    dtype: str
    agreement: Agreement | None
    tolerance: Tolerance
    skipped: str = ""

    @property
    def passed(self) -> bool:
        a, t = self.agreement, self.tolerance
        if a is None:
            return False
        return (
            a.mean_cosine >= t.mean_cosine
            and a.worst_cosine >= t.worst_cosine
            and a.top_k_agreement >= t.top_k_agreement
        )


def encode_all(encode: EncodeFn, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Return the rows for `texts`, encoded `batch_size` at a time (as the batcher would)."""
    return np.concatenate([encode(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])


def reference_config(config: ModelConfig) -> ModelConfig:
    """Return the torch fp32 CPU configuration of the same model, run eagerly: the yardstick."""
    return replace(
        config, name=f"{config.name} (reference)", backend="torch", dtype="fp32", device="cpu", torch_jit=False
    )


def judge(
    config: ModelConfig,
    reference: np.ndarray,
    texts: Sequence[str],
    make_encoder: Callable[[ModelConfig], Encoder] = Encoder,
) -> Verdict:
    """Load `config`, encode `texts`, and compare with the reference rows (skipped if it cannot load here)."""
    try:
        encoder = make_encoder(config)
    except ModelLoadError as exc:
        return Verdict(config.name, config.backend, config.dtype, None, TOLERANCES[config.dtype], str(exc))
    agreement = compare(reference, encode_all(encoder.encode, texts))
    return Verdict(config.name, config.backend, config.dtype, agreement, TOLERANCES[config.dtype])


def run_guard(
    configs: Sequence[ModelConfig], texts: Sequence[str] | None = None, make_encoder: Callable = Encoder
) -> list[Verdict]:
    """Judge each configuration against its model's torch fp32 reference (computed once per model path)."""
    texts = list(texts or quality_corpus())
    references: dict[str, np.ndarray] = {}
    verdicts = []
    for config in configs:
        if config.path not in references:
            references[config.path] = encode_all(make_encoder(reference_config(config)).encode, texts)
        verdicts.append(judge(config, references[config.path], texts, make_encoder))
    return verdicts


HEADER = f"{'model':<24} {'backend':<9} {'dtype':<5} {'mean cos':>9} {'worst':>8} {'top-5':>6}  verdict"


def format_verdict(verdict: Verdict) -> str:
    """Return one table row for `verdict` (under HEADER)."""
    head = f"{verdict.name:<24} {verdict.backend:<9} {verdict.dtype:<5}"
    if verdict.agreement is None:
        return f"{head} {'-':>9} {'-':>8} {'-':>6}  skipped: {verdict.skipped}"
    a, t = verdict.agreement, verdict.tolerance
    mark = "ok" if verdict.passed else "FAIL"
    return (
        f"{head} {a.mean_cosine:9.5f} {a.worst_cosine:8.5f} {a.top_k_agreement:6.3f}  {mark} "
        f"(needs >= {t.mean_cosine} / {t.worst_cosine} / {t.top_k_agreement})"
    )
