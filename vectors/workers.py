"""`serve --workers N`: N server processes sharing one listening socket, supervised by this process.

The parent binds the port once and starts N fresh `manage.py serve --fd` processes that inherit
the socket (the kernel spreads connections between them). Each loads its own copy of the models.
PROMETHEUS_MULTIPROC_DIR is set for them so /metrics adds up every worker. SIGTERM/SIGINT are
forwarded; each worker drains as a single server does; the parent exits when all have stopped.

A worker that dies after it was serving (killed by the OOM killer, a crash in native code) is
replaced at once by a new one on the same socket; the others keep serving meanwhile. A worker that
dies before it ever listened cannot start (bad settings, a model that does not load): the parent
stops the others and exits with its code instead of restarting it for ever. So does a worker that
keeps dying: more than `MAX_RESTARTS` replacements within `RESTART_WINDOW_S`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

from .serving import CannotListen, ServeOptions

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
POLL_S = 0.2


class _Worker:
    """One slot of the pool: its current process, and whether that process has listened yet."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen
        self.ready: threading.Event
        self.relay: threading.Thread


def run_workers(opts: ServeOptions, workers: int, manage_py: Path, out: IO[str]) -> int:
    """Bind, start `workers` servers on the shared socket, keep them alive, return the worst exit code."""
    try:
        listener = socket.create_server((opts.host, opts.port), backlog=opts.backlog)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror or exc}") from exc
    listener.set_inheritable(True)
    host, port = listener.getsockname()[:2]
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="embed-metrics-")
    for stale in Path(metrics_dir).glob("*.db"):
        stale.unlink()  # prometheus_client requires an empty folder at start
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    command = [sys.executable, str(manage_py), "serve", "--fd", str(listener.fileno())]
    command += ["--drain-timeout", str(opts.drain_timeout_s), "--read-timeout", str(opts.read_timeout_s)]
    command += ["--server", opts.server]
    command += ["--access-log"] if opts.access_log else []
    command += ["--no-warm"] if not opts.warm else []
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            out.write(line)
            out.flush()

    def relay(worker: _Worker, process: subprocess.Popen) -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("listening on"):
                worker.ready.set()
                continue
            say(f"[worker {worker.index}] {line}")

    def launch(worker: _Worker) -> None:
        """Start a process in `worker`'s slot (its first, or one replacing the dead one)."""
        process = worker.process = subprocess.Popen(
            command, env=env, pass_fds=(listener.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        worker.ready = threading.Event()
        worker.relay = threading.Thread(target=relay, args=(worker, process), daemon=True)
        worker.relay.start()
        if stopping.is_set():  # a signal came while it was being started: it stops with the others
            process.send_signal(signal.SIGTERM)

    stopping = threading.Event()
    pool = [_Worker(index) for index in range(workers)]
    for worker in pool:
        launch(worker)

    def forward(signum: int, frame: object) -> None:
        stopping.set()
        for worker in pool:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def announce() -> None:
        for worker in pool:
            worker.ready.wait()
        if not stopping.is_set():
            say(f"listening on http://{host}:{port} ({workers} workers)\n")

    threading.Thread(target=announce, daemon=True).start()
    restarts: deque[float] = deque()
    failure = 0
    while True:
        if stopping.is_set():
            if all(worker.process.poll() is not None for worker in pool):
                break
        else:
            for worker in pool:
                code = worker.process.poll()
                if code is None:
                    continue
                worker.relay.join(5)  # its last lines (a "listening on" among them) are read
                now = time.monotonic()
                while restarts and now - restarts[0] > RESTART_WINDOW_S:
                    restarts.popleft()
                if not worker.ready.is_set():
                    reason = "before it was serving"
                elif len(restarts) >= MAX_RESTARTS:
                    reason = f"after {len(restarts)} restarts within {RESTART_WINDOW_S:.0f} s"
                else:
                    _forget_metrics_of(worker.process.pid, metrics_dir)
                    restarts.append(now)
                    say(f"[worker {worker.index}] exited with code {code}; starting a new one\n")
                    launch(worker)
                    continue
                say(f"[worker {worker.index}] exited with code {code} {reason}; stopping the others\n")
                failure = code if code > 0 else 1  # killed by a signal: -N
                forward(signal.SIGTERM, None)
                break
        time.sleep(POLL_S)
    codes = [worker.process.wait() for worker in pool]
    for worker in pool:  # a replaced process's relay was joined when it died
        worker.relay.join(5)
    listener.close()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(metrics_dir, ignore_errors=True)
    say("stopped\n")
    return failure or max(codes, key=abs)


def _forget_metrics_of(pid: int, metrics_dir: str) -> None:
    """Drop a dead worker's live gauges (its counters stay: what it served still counts)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)
