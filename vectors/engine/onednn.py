"""Which library multiplies torch's fp32 Linear layers in the traced model on the CPU: torch's own or oneDNN.

PyPI's torch for x86 runs an fp32 Linear layer as an MKL sgemm. MKL picks its kernels by CPU vendor as
well as by instruction set: on an AMD EPYC it does not take its AVX-512 path (`MKL_VERBOSE=1` names no
instruction set there, only "Intel(R) Architecture processors"). oneDNN, which the same torch carries,
picks by instruction set only (`ONEDNN_VERBOSE=1`: AVX-512 on the same CPU). On a Zen 5 EPYC (2 vCPUs,
full-width AVX-512), the packaged model traced, batches of 128 of bench/corpora/default.txt, medians of
5 rounds: 327 -> 601 texts/s on two threads, 179 -> 343 on one; 345 -> 541-597 over 400 batches of 1-64
texts (new shapes cost oneDNN a first call each); the rows the same to 2.4e-7 (cosine 0.9999999). bf16
gains nothing from it (torch already runs bf16 Linear layers on oneDNN): only fp32 is swapped.

`auto` takes oneDNN on an x86 CPU with AVX-512 that is not Intel's, as /proc/cpuinfo tells (so on Linux),
and torch's own choice everywhere else (on Intel MKL takes its best path; Arm builds of torch do not use
MKL; an AVX2-only AMD CPU was not measured with the swap).

oneDNN keeps the kernels of each shape it has run (its primitive cache and ideep's in front of it, 1024
shapes each by default); the service leaves them at that. Held to 64 each (ONEDNN_PRIMITIVE_CACHE_CAPACITY,
LRU_CACHE_CAPACITY) a served model's memory stayed lower, but served traffic, whose shapes recur, lost 8 %
(Zen 5, uvicorn, wrk at 100 connections, 4 alternated pairs, medians: fp32 668 against 725 req/s, peak RSS
798 against 1 084 MiB; bf16 961 against 1 040, 749 against 1 057 MiB; at 256 each fp32 680 against 725).
"""

from __future__ import annotations

import contextlib
import functools
import platform
import warnings
from collections.abc import Callable, Iterator

import torch

from . import support
from .errors import ModelLoadError

CHOICES = support.TORCH_LINEAR
X86 = ("x86_64", "amd64", "i386", "i686")


def available() -> bool:
    """Whether this torch build has oneDNN and the Linear op of it that this module calls."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def resolve(choice: str, cpuinfo: str | None = None, machine: str | None = None) -> str:
    """Return "onednn" or "torch" for the setting `choice` (EMBED_TORCH_LINEAR) on this CPU.

    Raises:
        ModelLoadError: `choice` is not one of CHOICES, or is "onednn" on a torch without oneDNN.
    """
    if choice not in CHOICES:
        raise ModelLoadError(f"torch linear {choice!r} is not one of {CHOICES}")
    if choice == "onednn" and not available():
        raise ModelLoadError("EMBED_TORCH_LINEAR=onednn: this torch build has no oneDNN (torch.backends.mkldnn)")
    if choice != "auto":
        return choice
    x86 = (machine or platform.machine()).lower() in X86
    cpuinfo = support.read_cpuinfo() if cpuinfo is None else cpuinfo  # read once, for the vendor and the flags
    vendor = support.cpu_vendor(cpuinfo or "")
    # AVX-512 is what MKL leaves unused on AMD; on an AVX2-only AMD CPU the swap was not measured.
    avx512 = "avx512f" in (support.cpu_flags(cpuinfo or "") or set())
    return "onednn" if x86 and vendor not in (None, "GenuineIntel") and avx512 and available() else "torch"


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # Scripted: a trace records the op only through a script function (it cannot trace the empty
    # Scalar?[] argument itself), and TorchScript takes `Scalar` as int | float | complex.
    scalars: list[int | float | complex | None] = []
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", scalars, None)


@functools.cache
def onednn_linear() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The scripted call, compiled at first use (a torch without the op can still import this module)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 calls TorchScript deprecated; it runs it
        return torch.jit.script(_onednn_linear)


class OneDnnLinear(torch.nn.Module):
    """An nn.Linear's weight and bias, multiplied by oneDNN."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.call = onednn_linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(x, self.weight, self.bias)


@contextlib.contextmanager
def linears_on_onednn(module: torch.nn.Module) -> Iterator[int]:
    """Within the block, every nn.Linear inside `module` runs on oneDNN; yields how many were swapped.

    For tracing: the trace keeps the swapped layers, the module gets its own back at the end, whatever
    happened within. The module must not be in use meanwhile (TorchRunner traces before its encoder is
    handed to anyone).
    """
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    try:
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(parent, name, OneDnnLinear(child))
                    swapped.append((parent, name, child))
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
