"""Which backend x dtype x device combinations run, and the reason when one does not (no heavy imports)."""

from __future__ import annotations

import importlib.util

BACKENDS = ("torch", "onnx", "openvino")
DTYPES = ("fp32", "fp16", "bf16", "int8")
# Which library multiplies torch's fp32 Linear layers on the CPU (EMBED_TORCH_LINEAR; vectors.engine.onednn).
TORCH_LINEAR = ("auto", "torch", "onednn")

# backend -> dtype -> device kinds it runs on ("cpu", "cuda"); "auto" resolves to one of them.
SUPPORTED: dict[str, dict[str, tuple[str, ...]]] = {
    "torch": {"fp32": ("cpu", "cuda", "mps"), "bf16": ("cpu", "cuda"), "fp16": ("cuda",)},
    "onnx": {"fp32": ("cpu",), "int8": ("cpu",)},
    "openvino": {"fp32": ("cpu",), "bf16": ("cpu",), "int8": ("cpu",)},
}

PACKAGES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}

ALTERNATIVES = {
    "fp16": "fp16 runs on CUDA only (model.half()); on CPU use bf16 (torch or openvino) or int8 (onnx or openvino)",
    "int8": "int8 runs with backend=onnx or backend=openvino",
    "bf16": "bf16 runs with backend=torch or backend=openvino",
}


def device_kind(device: str) -> str:
    """Return `cpu`, `cuda`, `mps` or `auto` for a device string such as `cuda:1`."""
    return device.split(":")[0]


def problem(backend: str, dtype: str, device: str) -> str | None:
    """Return why this combination cannot run, or None when it can (before looking at the hardware)."""
    if backend not in SUPPORTED:
        return f"backend {backend!r} is not one of {BACKENDS}"
    if dtype not in DTYPES:
        return f"dtype {dtype!r} is not one of {DTYPES}"
    devices = SUPPORTED[backend].get(dtype)
    if devices is None:
        return f"backend {backend!r} does not run dtype {dtype!r}; {ALTERNATIVES[dtype]}"
    kind = device_kind(device)
    if kind == "auto":
        # auto means CUDA when present: a CUDA-only dtype must say so explicitly.
        if devices == ("cuda",):
            return f"{ALTERNATIVES[dtype]}; set the device to cuda explicitly"
        return None
    if kind not in devices:
        reason = f"backend {backend!r} with dtype {dtype!r} does not run on {kind!r} (runs on {', '.join(devices)})"
        return f"{reason}: {ALTERNATIVES[dtype]}" if devices == ("cuda",) else reason
    return None


def missing_package(backend: str) -> str | None:
    """Return the Python package that `backend` needs when it is not installed, else None."""
    package = PACKAGES.get(backend)
    if package and importlib.util.find_spec(package) is None:
        return package
    return None


def read_cpuinfo() -> str | None:
    """/proc/cpuinfo's text; None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def cpuinfo_values(cpuinfo: str, *keys: str) -> list[str]:
    """The values of a /proc/cpuinfo text's lines whose key is one of `keys` (case counts: x86's "model" is
    a number, Arm's "Model" a name), stripped, in file order; one per processor for most keys."""
    values = []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            values.append(value.strip())
    return values


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); None: cannot tell."""
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    if cpuinfo is None:
        return None
    return {flag for value in cpuinfo_values(cpuinfo, "flags", "Features") for flag in value.split()} or None


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU multiplies in bf16 natively (x86 AVX512_BF16 or AMX, Arm BF16); None: cannot tell."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_int8_dot(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU has int8 dot-product instructions (x86 AVX512_VNNI, AVX_VNNI or AMX, Arm dotprod).

    Without them (an AVX2-only x86 CPU, measured on a Zen 3 EPYC) OpenVINO's CPU plugin does not quantise
    activations on the fly: its int8 runs the int8 weights as fp32, slower than plain fp32.
    """
    flags = cpu_flags(cpuinfo)
    return None if flags is None else bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def cpu_vendor(cpuinfo: str | None = None) -> str | None:
    """The x86 CPU's vendor string ("GenuineIntel", "AuthenticAMD", ...); None: not x86, or cannot tell."""
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    return next(iter(cpuinfo_values(cpuinfo or "", "vendor_id")), None) or None
