"""The model call itself, one class per backend: texts in, un-normalised float32 rows out."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ModelLoadError

logger = logging.getLogger(__name__)


class TorchRunner:
    """sentence-transformers' own encode in fp32, bf16 (autocast) or fp16 (half weights, CUDA).

    bf16 uses autocast rather than bf16 weights: matmuls run in bf16 where the CPU or GPU has the
    instructions, while LayerNorm, softmax and the pooled sum stay fp32 - the accuracy of fp32 with
    the speed of bf16 matmuls. fp16 converts the weights (model.half()), the usual CUDA setting.
    """

    def __init__(self, model: object, device: str, dtype: str) -> None:
        self.model = model
        self.device_type = device.split(":")[0]
        self.autocast = dtype == "bf16"
        if dtype == "fp16":
            model.half()  # type: ignore[attr-defined]

    def _context(self) -> contextlib.AbstractContextManager:
        import torch

        if self.autocast:
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode(), self._context():
            rows = self.model.encode(  # type: ignore[attr-defined]
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return rows.float().cpu().numpy()


class _TokenizingRunner:
    """Shared part of the exported backends: tokenise like sentence-transformers, then run a graph."""

    def __init__(self, tokenizer: object, max_seq_length: int, artifact: Path) -> None:
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.input_names: list[str] = json.loads((artifact.parent / "meta.json").read_text())["inputs"]

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(  # type: ignore[operator]
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
        )
        return {name: np.ascontiguousarray(encoded[name], dtype=np.int64) for name in self.input_names}


class OnnxRunner(_TokenizingRunner):
    """ONNX Runtime on CPU: the exported fp32 graph or its int8 rewrite."""

    def __init__(self, tokenizer: object, max_seq_length: int, artifact: Path, threads: int) -> None:
        super().__init__(tokenizer, max_seq_length, artifact)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise ModelLoadError(f"onnxruntime cannot load {artifact}: {exc}") from exc

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.session.run(None, self.feeds(texts))[0], dtype=np.float32)


class OpenVinoRunner(_TokenizingRunner):
    """OpenVINO on CPU, compiled from the exported fp32 ONNX graph; bf16 via its precision hint."""

    def __init__(
        self, tokenizer: object, max_seq_length: int, artifact: Path, threads: int, dtype: str, streams: int = 1
    ) -> None:
        super().__init__(tokenizer, max_seq_length, artifact)
        import openvino as ov

        core = ov.Core()
        if dtype == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ModelLoadError(
                "openvino bf16 needs a CPU with bf16 instructions (AVX512_BF16 or AMX); this one has "
                f"{core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')}; use dtype fp32 or backend onnx int8"
            )
        config = {
            "INFERENCE_NUM_THREADS": threads * streams,
            "INFERENCE_PRECISION_HINT": "bf16" if dtype == "bf16" else "f32",
            "CACHE_DIR": str(artifact.parent / "openvino-cache"),  # compiled blobs: later starts skip compiling
        }
        # One stream: every thread on one call at a time. Several: that many calls side by side (one per
        # encode thread), `threads` threads each.
        config.update({"PERFORMANCE_HINT": "LATENCY"} if streams == 1 else {"NUM_STREAMS": streams})
        try:
            self.compiled = core.compile_model(core.read_model(str(artifact)), "CPU", config)
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise ModelLoadError(f"openvino cannot compile {artifact}: {exc}") from exc
        self._requests = threading.local()  # an infer request serves one call at a time: one per thread

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        result = request.infer(self.feeds(texts))
        return np.array(result[0], dtype=np.float32)  # a copy: the request reuses its output buffer
