"""The model call itself, one class per backend: texts in, un-normalised float32 rows (and token counts) out."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import support
from .artifacts import artifact_inputs
from .batches import unit_rows
from .errors import ArtifactUnreadable, ModelLoadError
from .length_groups import CALL_COST, grouped, padded_columns

logger = logging.getLogger(__name__)

# A call's rows, and each text's token count as the model saw it (after truncation) where the call
# tokenised the texts itself; None where it cannot tell (eager sentence-transformers encode).
Counted = tuple[np.ndarray, np.ndarray | None]


# What a traced model is checked on against its eager self at load: a padded batch (the trace is made
# on a padded pair, so the attention mask stays in its graph), a text alone, one past any length limit,
# and a few scripts.
TRACE_CHECK = [
    "a short text",
    "a somewhat longer sentence, to be padded against the others in its batch",
    "Ein kurzer deutscher Satz über das Wetter.",
    "日本語の短い文です。",
    "word " * 600,
]


class TorchRunner:
    """sentence-transformers' model in fp32, bf16 or fp16 (fp16 on CUDA), its weights converted once at load.

    bf16 converts the whole model (model.to(torch.bfloat16)): every op runs in bf16, so nothing is cast
    on the way. Autocast over bf16 Linear weights (matmuls in bf16, LayerNorm/softmax/pooling in fp32),
    which this used before, measured x0.86 of it on a Xeon with AMX (traced, batches of 128, 5 rounds,
    medians: x0.86 on one thread in CPU seconds, x0.87 on two), its mean cosine to fp32 0.99999 against
    0.99995 here (worst 0.99997 against 0.99990): the accuracy that autocast keeps is far below what
    any caller can see, the time it costs is not. fp16 likewise converts the weights (model.half()).

    With `jit`, on the CPU, the model runs as a frozen TorchScript trace of its whole pipeline (tokens
    in, pooled vector out): one call that runs every layer without the GIL, instead of a Python call per
    layer and op that must take the GIL back each time while the event loop and the other encode lane
    hold it. The trace is checked against the eager model at load (`TRACE_CHECK`); a model that cannot be
    traced, or whose trace disagrees, runs eagerly, with a warning naming why. In fp32 the trace's Linear
    layers run on oneDNN where `linear` resolves to it (vectors.engine.onednn: `auto` on a non-Intel
    x86 CPU with AVX-512); a oneDNN trace that fails its check is traced again with torch's own.
    """

    CALL_COST = CALL_COST

    def __init__(self, model: object, device: str, dtype: str, jit: bool = False, linear: str = "auto") -> None:
        self.model = model
        self.device = device
        self.device_type = device.split(":")[0]
        self._lane = threading.local()  # on CUDA: the calling thread's own stream
        if dtype == "fp16":
            model.half()  # type: ignore[attr-defined]
        if dtype == "bf16":
            import torch

            if self.device_type == "cuda" and not torch.cuda.is_bf16_supported():
                raise ModelLoadError(f"{device} has no bf16 (before Ampere): use dtype fp16 on this GPU")
            model.to(torch.bfloat16)  # type: ignore[attr-defined]
            if self.device_type == "cpu" and support.cpu_has_bf16() is False:
                logger.warning(
                    "torch bf16 on a CPU without bf16 instructions (AVX512_BF16, AMX or Arm BF16): the matmuls "
                    "are emulated and run several times slower than fp32 (x0.2 measured on an AVX2 EPYC); "
                    "use dtype fp32, or int8 with backend onnx or openvino"
                )
        self.names: list[str] = []
        # Which library runs the trace's Linear layers ("torch" or "onednn"); None: not traced.
        self.linear: str | None = None
        self.traced = None
        if jit and self.device_type == "cpu":
            from . import onednn

            library = onednn.resolve(linear) if dtype == "fp32" else "torch"
            self.traced = self._trace(library)
            if self.traced is None and library == "onednn":
                self.traced = self._trace("torch")

    def _trace(self, linear: str) -> object | None:
        import warnings

        import torch

        from .export import pipeline_module

        sample = self.model.preprocess(TRACE_CHECK[:2])  # type: ignore[attr-defined]
        names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python values it records
                module = pipeline_module(self.model, names).eval()
                swap = contextlib.nullcontext(0)
                if linear == "onednn":
                    from .onednn import linears_on_onednn

                    swap = linears_on_onednn(module)
                with swap as swapped:  # the trace keeps oneDNN's layers; the model gets its own back
                    inputs = tuple(sample[n] for n in names)
                    traced = torch.jit.freeze(torch.jit.trace(module, inputs, check_trace=False))
                linear = linear if swapped else "torch"  # no nn.Linear to swap: torch's own ran the trace
            for texts in (TRACE_CHECK, TRACE_CHECK[:1]):
                got, want = self._run_traced(traced, names, texts)[0], self._run_eager(texts)
                cosine = (unit_rows(got, np.float64) * unit_rows(want, np.float64)).sum(axis=1)
                if not np.isfinite(got).all() or cosine.min() < 0.9999:
                    raise ValueError(f"its rows differ from the eager model's (lowest cosine {cosine.min():.6f})")
        except Exception as exc:  # tracing raises many types; any of them means: run eagerly
            name = type(exc).__name__
            if linear == "onednn":
                logger.warning("the trace with oneDNN Linear layers failed (%s: %s); tracing with torch's", name, exc)
            else:
                logger.warning("the model does not run as a TorchScript trace (%s: %s); it runs eagerly", name, exc)
            return None
        self.names = names
        self.linear = linear
        return traced

    def _stream(self) -> contextlib.AbstractContextManager:
        """On CUDA, run the calling thread's work on a stream of its own (on the CPU: nothing).

        With two encode lanes, one lane's kernels then run while the other tokenises, and a lane's copy
        of its rows back to the host waits for its own kernels only, not for everything queued on the
        device's shared default stream.
        """
        if self.device_type != "cuda":
            return contextlib.nullcontext()
        import torch

        stream = getattr(self._lane, "stream", None)
        if stream is None:
            torch.cuda.synchronize(self.device)  # the weights' copies to the device are finished
            stream = self._lane.stream = torch.cuda.Stream(device=self.device)
        return torch.cuda.stream(stream)

    def _run_traced(self, traced: object, names: list[str], texts: Sequence[str]) -> Counted:
        import torch

        features = self.model.preprocess(list(texts))  # type: ignore[attr-defined]
        mask = features.get("attention_mask")
        counts = None if mask is None else mask.sum(dim=1).numpy()
        columns = padded_columns(self.model.tokenizer, features[names[0]].shape[1])  # type: ignore[attr-defined]

        def call(rows: np.ndarray, width: int) -> np.ndarray:
            inputs = [features[name] for name in names]
            if len(rows) < len(texts) or 0 < width < inputs[0].shape[1]:
                index = torch.from_numpy(rows)
                inputs = [tensor[index][:, columns(width)] for tensor in inputs]
            with torch.inference_mode():
                return traced(*inputs).float().numpy()  # type: ignore[operator]

        return grouped(counts, self.CALL_COST, len(texts), call), counts

    def _run_eager(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with self._stream(), torch.inference_mode():
            rows = self.model.encode(  # type: ignore[attr-defined]
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
            return rows.float().cpu().numpy()  # inside the stream: the copy waits for this lane's kernels

    @property
    def counts_tokens(self) -> bool:
        """The traced call tokenises here, so it can tell each text's token count (its attention mask)."""
        return "attention_mask" in self.names  # the trace's inputs; none when it runs eagerly

    def counted(self, texts: Sequence[str]) -> Counted:
        if self.traced is not None:
            return self._run_traced(self.traced, self.names, texts)
        return self._run_eager(texts), None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.counted(texts)[0]


class _TokenizingRunner:
    """Shared part of the exported backends: tokenise like sentence-transformers, then run a graph."""

    CALL_COST = CALL_COST

    def __init__(self, tokenizer: object, max_seq_length: int, artifact: Path) -> None:
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.input_names: list[str] = artifact_inputs(artifact)

    @property
    def counts_tokens(self) -> bool:
        """The graph's inputs are what the tokenizer gives (export.export_onnx): a mask means counts."""
        return "attention_mask" in self.input_names

    def feeds(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The graph's inputs, and each text's token count after truncation (None if the tokenizer has no mask)."""
        encoded = self.tokenizer(  # type: ignore[operator]
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
        )
        mask = encoded.get("attention_mask")
        feeds = {name: np.ascontiguousarray(encoded[name], dtype=np.int64) for name in self.input_names}
        return feeds, None if mask is None else mask.sum(axis=1)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's float32 rows for these inputs."""
        raise NotImplementedError

    def counted(self, texts: Sequence[str]) -> Counted:
        feeds, counts = self.feeds(texts)
        full = next(iter(feeds.values())).shape[1]
        columns = padded_columns(self.tokenizer, full)

        def call(rows: np.ndarray, width: int) -> np.ndarray:
            if len(rows) == len(texts) and width in (0, full):
                return self.run(feeds)
            return self.run({name: np.ascontiguousarray(a[rows][:, columns(width)]) for name, a in feeds.items()})

        return grouped(counts, self.CALL_COST, len(texts), call), counts

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.counted(texts)[0]


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
            raise ArtifactUnreadable(f"onnxruntime cannot load {artifact}: {exc}") from exc

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)


class OpenVinoRunner(_TokenizingRunner):
    """OpenVINO on CPU, compiled from the exported ONNX graph: fp32; bf16 via its precision hint; int8.

    int8: the graph's weights are int8 (export variant onnx-w8); the CPU plugin quantises each row's
    activations on the fly, per group of INT8_GROUP input features, and multiplies in int8 (VNNI
    where the CPU has it). 128 measured fastest (Xeon Ice Lake, one thread, batches of 128 of similar
    length, 3 rounds: 411-424 texts per CPU second; 64: 318-423; 256: 344-370; fp32 178-235).

    compile_cache: the folder where OpenVINO keeps the compiled model, so that later starts skip
    compiling (vectors.engine.artifacts.compile_cache_dir); None: compile at every start.
    """

    INT8_GROUP = 128

    def __init__(
        self,
        tokenizer: object,
        max_seq_length: int,
        artifact: Path,
        threads: int,
        dtype: str,
        streams: int = 1,
        compile_cache: Path | None = None,
    ) -> None:
        super().__init__(tokenizer, max_seq_length, artifact)
        import openvino as ov

        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        needed = {"bf16": ("BF16", "bf16 instructions (AVX512_BF16 or AMX)"), "int8": ("INT8", "int8 instructions")}
        if dtype in needed and needed[dtype][0] not in capabilities:
            raise ModelLoadError(
                f"openvino {dtype} needs a CPU with {needed[dtype][1]}; this one has {capabilities}; "
                "use dtype fp32 or backend onnx int8"
            )
        config = {
            "INFERENCE_NUM_THREADS": threads * streams,
            "INFERENCE_PRECISION_HINT": "bf16" if dtype == "bf16" else "f32",
        }
        if compile_cache is not None:
            config["CACHE_DIR"] = str(compile_cache)
        if dtype == "int8":
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = self.INT8_GROUP
            if support.cpu_has_int8_dot() is False:
                logger.warning(
                    "openvino int8 on a CPU without int8 dot-product instructions (AVX512_VNNI, AVX_VNNI, AMX or "
                    "Arm dotprod): OpenVINO then multiplies the int8 weights in fp32, slower than openvino fp32 "
                    "(x0.84 of it measured on an AVX2 EPYC, where onnx int8 ran x1.36 of onnx fp32); use backend "
                    "onnx with dtype int8"
                )
        # One stream: every thread on one call at a time. Several: that many calls side by side (one per
        # encode thread), `threads` threads each.
        config.update({"PERFORMANCE_HINT": "LATENCY"} if streams == 1 else {"NUM_STREAMS": streams})
        try:
            self.compiled = core.compile_model(core.read_model(str(artifact)), "CPU", config)
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise ArtifactUnreadable(f"openvino cannot compile {artifact}: {exc}") from exc
        self._requests = threading.local()  # an infer request serves one call at a time: one per thread

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        result = request.infer(feeds)
        return np.array(result[0], dtype=np.float32)  # a copy: the request reuses its output buffer
