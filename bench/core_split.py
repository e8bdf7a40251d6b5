"""Where the cores go while a configuration is served, and what the model costs alone.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/core_split.py onnx-int8 torch-fp32 --rounds 3
    EMBED_SERVER=uvicorn HF_HUB_OFFLINE=1 .venv/bin/python bench/core_split.py onnx-int8

For each configuration (bench/backends.py's names) it starts the service as bench/backends.py does and runs
wrk (`-t1 -c100`, bench/wrk/get_vector.lua, through bench/backends.py's `wrk`) against it on the same cores,
several times. Over each run it reads every thread's CPU from /proc/PID/task/*/stat, wrk's from its rusage
and the machine's idle time from /proc/stat, and prints them in cores: the event loop (the main thread), the
encode work (every other thread of the server: the lanes and the ONNX Runtime / OpenVINO / torch threads
they drive), wrk, and what stayed idle. Then, in this process, the model alone as the service runs it at 100
connections (two lanes of 32 texts at once, half the threads each) over the same corpus: texts/s and CPU
milliseconds a text. Served CPU a request in the lanes against that CPU a text tells whether the lanes lose
anything inside; the cores beside them tell what the served / own-limit ratio lacks
(bench/README-backends.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import backends

TICK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 100


def thread_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each of `pid`'s threads."""
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def idle_seconds() -> float:
    """The machine's idle and iowait seconds, all cores together."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / TICK


def served(name: str, data_dir: str, rounds: int, seconds: int) -> None:
    server = backends.start_server(name, data_dir)
    try:
        pid = server.process.pid  # type: ignore[union-attr]
        backends.wrk(server.url, 3, CONNECTIONS)  # untimed warm-up
        for round_ in range(1, rounds + 1):
            threads0, idle0, started = thread_seconds(pid), idle_seconds(), time.perf_counter()
            summary = backends.wrk(server.url, seconds, CONNECTIONS)
            requests, wrk_cpu = int(summary["requests"]), summary["cpu_s"]
            threads1, idle1, took = thread_seconds(pid), idle_seconds(), time.perf_counter() - started
            used = {tid: cpu - threads0.get(tid, 0.0) for tid, cpu in threads1.items()}
            loop = used.pop(pid, 0.0)
            encode = sum(used.values())
            print(
                f"{name} served, round {round_}: {requests / took:.0f} req/s; cores: encode {encode / took:.2f},"
                f" event loop {loop / took:.2f}, wrk {wrk_cpu / took:.2f}, idle {(idle1 - idle0) / took:.2f};"
                f" encode {encode / requests * 1000:.2f} ms and loop {loop / requests * 1e6:.0f} us a request",
                flush=True,
            )
    finally:
        server.stop(grace_s=60)
        server.log_path.unlink(missing_ok=True)


def alone(name: str, encoder: object, rounds: int) -> None:
    wall = backends.OfflineLimit(batches=8)
    cpu = backends.OfflineLimit(batches=8, clock=time.process_time)  # every thread of this process
    for round_ in range(1, rounds + 1):
        rate, per_cpu_second = wall._two_at_once(encoder, 32), cpu._two_at_once(encoder, 32)
        print(
            f"{name} alone, round {round_}: {rate:.0f} texts/s, {1000 / per_cpu_second:.2f} ms CPU a text"
            " (two lanes of 32 at once)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", choices=list(backends.CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds a round")
    args = parser.parse_args()
    print(f"server {os.environ.get('EMBED_SERVER', 'daphne')}; {os.cpu_count()} CPUs", flush=True)
    for name in args.configs:
        with tempfile.TemporaryDirectory() as data_dir:
            # Export (if the backend needs it) here first, where the server then finds the artifact.
            encoder = backends.load_encoders([name], str(Path(data_dir) / "models"))[name]
            served(name, data_dir, args.rounds, args.duration)
            alone(name, encoder, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
